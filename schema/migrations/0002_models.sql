CREATE TABLE `models` (
	`version` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`status` text NOT NULL,
	`source` text NOT NULL,
	`manifest_sha256` text NOT NULL,
	`files` text NOT NULL,
	`metrics` text DEFAULT '{}' NOT NULL,
	`memory_bytes` integer NOT NULL,
	`created_at` integer NOT NULL,
	`activated_at` integer,
	`served_at` integer,
	`retired_at` integer
);
--> statement-breakpoint
CREATE INDEX `models_status` ON `models` (`status`);