-- Flow: sensor-alerts-tags
-- Version: 1
-- Kind: event-processing
-- Id: sensor-alerts-tags@1
-- Rendered by flow-reconciler from the flow's JSON; edit the flow, not this file.

CREATE TABLE `Capteurs (température)` (
  `sensor id` STRING,
  `température` DOUBLE,
  `tags` ARRAY<STRING>,
  `read_at` TIMESTAMP(3),
  `event_time` AS `read_at`,
  WATERMARK FOR `event_time` AS `event_time` - INTERVAL '2' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = 'iot.readings',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'scan.startup.mode' = 'earliest-offset',
  'format' = 'json'
);

CREATE TEMPORARY VIEW `It's ``hot``` AS
SELECT
  `sensor id`,
  `température`,
  `tags`,
  `read_at`,
  `event_time`
FROM `Capteurs (température)`
WHERE (`température` > 40.5 AND `sensor id` <> 'test''s');

CREATE TEMPORARY VIEW `One event per tag` AS
SELECT
  `i`.`sensor id`,
  `i`.`température`,
  `i`.`read_at`,
  `i`.`event_time`,
  `u`.`tag`
FROM `It's ``hot``` AS `i`
CROSS JOIN UNNEST(`i`.`tags`) AS `u` (`tag`);

CREATE TABLE `Alertes 🔥` (
  `sensor id` STRING,
  `température` DOUBLE,
  `read_at` TIMESTAMP(3),
  `event_time` TIMESTAMP(3),
  `tag` STRING
) WITH (
  'connector' = 'kafka',
  'topic' = 'iot.alerts',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'format' = 'json'
);

INSERT INTO `Alertes 🔥`
SELECT
  `sensor id`,
  `température`,
  `read_at`,
  `event_time`,
  `tag`
FROM `One event per tag`;
