CREATE TABLE `batch_jobs` (
	`id` text PRIMARY KEY NOT NULL,
	`status` text NOT NULL,
	`since_ms` integer NOT NULL,
	`options` text NOT NULL,
	`users` integer NOT NULL,
	`parts` integer NOT NULL,
	`done_parts` integer DEFAULT 0 NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`finished_at` integer
);
--> statement-breakpoint
CREATE TABLE `batch_parts` (
	`job_id` text NOT NULL,
	`part` integer NOT NULL,
	`users` text NOT NULL,
	`status` text NOT NULL,
	`written` integer,
	`attempts` integer DEFAULT 0 NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `batch_parts_job_part` ON `batch_parts` (`job_id`,`part`);