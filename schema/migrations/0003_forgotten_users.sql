CREATE TABLE `forgotten_users` (
	`user_id` text PRIMARY KEY NOT NULL,
	`forgotten_at` integer NOT NULL
);
