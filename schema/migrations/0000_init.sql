CREATE TABLE `events` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`user_id` text NOT NULL,
	`event_key` text NOT NULL,
	`item_id` text NOT NULL,
	`type` text NOT NULL,
	`ts` integer NOT NULL,
	`received_at` integer NOT NULL,
	`in_model` integer NOT NULL,
	`model_version` text
);
--> statement-breakpoint
CREATE UNIQUE INDEX `events_user_key` ON `events` (`user_id`,`event_key`);--> statement-breakpoint
CREATE INDEX `events_ts` ON `events` (`ts`);--> statement-breakpoint
CREATE INDEX `events_user_type` ON `events` (`user_id`,`type`);--> statement-breakpoint
CREATE TABLE `items` (
	`id` text PRIMARY KEY NOT NULL,
	`title` text NOT NULL,
	`category_path` text DEFAULT '[]' NOT NULL,
	`category_key` text DEFAULT '' NOT NULL,
	`price` real,
	`currency` text,
	`available` integer DEFAULT true NOT NULL,
	`url` text,
	`image_url` text,
	`attributes` text DEFAULT '{}' NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`deleted_at` integer,
	`rev` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `items_rev` ON `items` (`rev`,`id`);