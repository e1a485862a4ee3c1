CREATE DATABASE IF NOT EXISTS databus_db;
USE databus_db;
-- databus: MySQL tables for app authentication (`app`, `auth`) and one
-- seed app with its grant, for local runs and tests. Safe to load again.
-- The database name appears only in the two lines above: tests load this
-- file into databases of their own by replacing that name.
CREATE TABLE IF NOT EXISTS `auth` (
  `id` INT NOT NULL AUTO_INCREMENT,
  `app_id` INT(11) NOT NULL,
  `group_name` VARCHAR(45) NULL,
  `operation` TINYINT(4) DEFAULT 0,
  `topic` VARCHAR(45) NOT NULL,
  `created_at` BIGINT(20) NULL,
  `deleted_at` BIGINT(20) NULL,
  `updated_at` BIGINT(20) NULL,
  PRIMARY KEY (`id`));
CREATE TABLE IF NOT EXISTS `app` (
  `id` INT NOT NULL AUTO_INCREMENT,
  `app_key` VARCHAR(45) NOT NULL,
  -- The secret's hash, `sha256:` and 64 hex digits (71 characters), or, in
  -- databases from before hashing, the secret itself. Databases created with
  -- the original VARCHAR(64) need:
  --   ALTER TABLE app MODIFY app_secret VARCHAR(128) NOT NULL;
  `app_secret` VARCHAR(128) NOT NULL,
  `cluster` VARCHAR(45) NOT NULL,
  `created_at` BIGINT(20) NULL,
  `deleted_at` BIGINT(20) NULL,
  `updated_at` BIGINT(20) NULL,
  PRIMARY KEY (`id`));
-- Optional: per-app caps (docs/operations.md, "Quotas"); a database without
-- this table has none. NULL or 0 is no cap. `databus admin apps quota` writes it.
CREATE TABLE IF NOT EXISTS `app_quota` (
  `app_id` INT NOT NULL,
  `records_per_sec` BIGINT NULL,
  `bytes_per_sec` BIGINT NULL,
  `max_connections` BIGINT NULL,
  `updated_at` BIGINT(20) NULL,
  PRIMARY KEY (`app_id`));
INSERT IGNORE INTO `app` (`id`,`app_key`,`app_secret`,`cluster`) VALUES (1,'app_key1','app_secret1','cluster1');
INSERT IGNORE INTO `auth` (`id`,`app_id`,`group_name`,`operation`,`topic`) VALUES (1,1,'group_name1',3,'test156');
