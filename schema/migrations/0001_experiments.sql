CREATE TABLE `experiments` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`description` text DEFAULT '' NOT NULL,
	`placement` text NOT NULL,
	`status` text NOT NULL,
	`salt` text NOT NULL,
	`variants` text NOT NULL,
	`attribution_window_ms` integer NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`started_at` integer,
	`stopped_at` integer
);
--> statement-breakpoint
CREATE INDEX `experiments_placement_status` ON `experiments` (`placement`,`status`);--> statement-breakpoint
CREATE TABLE `exposures` (
	`rec_id` text PRIMARY KEY NOT NULL,
	`experiment_id` text NOT NULL,
	`variant` text NOT NULL,
	`user_id` text NOT NULL,
	`placement` text NOT NULL,
	`items` text NOT NULL,
	`source` text,
	`reason` text,
	`fallback` integer DEFAULT false NOT NULL,
	`model_version` text,
	`latency_ms` real NOT NULL,
	`error` text,
	`forced` integer DEFAULT false NOT NULL,
	`ts` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `exposures_experiment_user` ON `exposures` (`experiment_id`,`user_id`,`ts`);--> statement-breakpoint
CREATE INDEX `exposures_user_ts` ON `exposures` (`user_id`,`ts`);--> statement-breakpoint
CREATE TABLE `rec_events` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`rec_id` text NOT NULL,
	`user_id` text NOT NULL,
	`event_key` text NOT NULL,
	`item_id` text NOT NULL,
	`type` text NOT NULL,
	`ts` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `rec_events_user_key` ON `rec_events` (`user_id`,`event_key`);--> statement-breakpoint
CREATE INDEX `rec_events_rec` ON `rec_events` (`rec_id`);