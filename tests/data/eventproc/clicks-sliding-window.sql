-- Flow: clicks-sliding-window
-- Version: 1
-- Kind: event-processing
-- Id: clicks-sliding-window@1
-- Rendered by flow-reconciler from the flow's JSON; edit the flow, not this file.

CREATE TABLE `Page clicks` (
  `page` STRING,
  `user_id` STRING,
  `clicked_at` BIGINT,
  `duration_ms` INT,
  `event_time` AS TO_TIMESTAMP_LTZ(`clicked_at`, 3),
  WATERMARK FOR `event_time` AS `event_time` - INTERVAL '30' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = 'web.clicks',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'scan.startup.mode' = 'latest-offset',
  'format' = 'json'
);

CREATE TEMPORARY VIEW `Clicks per page (2 h, every 10 min)` AS
SELECT
  `page`,
  COUNT(*) AS `clicks`,
  COUNT(`user_id`) AS `users_seen`,
  AVG(`duration_ms`) AS `average_ms`,
  `window_start`,
  `window_end`,
  `window_time` AS `event_time`
FROM TABLE(
  HOP(TABLE `Page clicks`, DESCRIPTOR(`event_time`), INTERVAL '10' MINUTE, INTERVAL '120' MINUTE(3)))
GROUP BY `window_start`, `window_end`, `window_time`, `page`;

CREATE TEMPORARY VIEW `Popular pages` AS
SELECT
  `page`,
  `clicks`,
  `users_seen`,
  `average_ms`,
  `window_start`,
  `window_end`,
  `event_time`
FROM `Clicks per page (2 h, every 10 min)`
WHERE (clicks >= 100);

CREATE TABLE `Popular pages out` (
  `page` STRING,
  `clicks` BIGINT,
  `users_seen` BIGINT,
  `average_ms` INT,
  `window_start` TIMESTAMP(3),
  `window_end` TIMESTAMP(3),
  `event_time` TIMESTAMP_LTZ(3)
) WITH (
  'connector' = 'kafka',
  'topic' = 'web.popular-pages',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'format' = 'json'
);

INSERT INTO `Popular pages out`
SELECT
  `page`,
  `clicks`,
  `users_seen`,
  `average_ms`,
  `window_start`,
  `window_end`,
  `event_time`
FROM `Popular pages`;
