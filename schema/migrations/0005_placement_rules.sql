CREATE TABLE `placement_rules` (
	`placement` text PRIMARY KEY NOT NULL,
	`rules` text NOT NULL,
	`updated_at` integer NOT NULL
);
