-- Flow: revenue-per-hour
-- Version: 1
-- Kind: event-processing
-- Id: revenue-per-hour@1
-- Rendered by flow-reconciler from the flow's JSON; edit the flow, not this file.

CREATE TABLE `Orders` (
  `order_id` STRING,
  `customer_id` STRING,
  `region` STRING,
  `price` DECIMAL(10, 2),
  `quantity` INT,
  `event_time` TIMESTAMP(3) METADATA FROM 'timestamp',
  WATERMARK FOR `event_time` AS `event_time` - INTERVAL '5' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = 'orders.v1',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'properties.group.id' = 'flow-reconciler-orders',
  'scan.startup.mode' = 'earliest-offset',
  'format' = 'json'
);

CREATE TEMPORARY VIEW `Valid orders` AS
SELECT
  `order_id`,
  `customer_id`,
  `region`,
  `price`,
  `quantity`,
  `event_time`
FROM `Orders`
WHERE (quantity > 0 AND price IS NOT NULL);

CREATE TEMPORARY VIEW `Revenue per region per hour` AS
SELECT
  `region`,
  COUNT(*) AS `orders`,
  SUM(`price`) AS `revenue`,
  AVG(`price`) AS `average_price`,
  MIN(`price`) AS `smallest`,
  MAX(`quantity`) AS `largest_quantity`,
  `window_start`,
  `window_end`,
  `window_time` AS `event_time`
FROM TABLE(
  TUMBLE(TABLE `Valid orders`, DESCRIPTOR(`event_time`), INTERVAL '1' HOUR))
GROUP BY `window_start`, `window_end`, `window_time`, `region`;

CREATE TABLE `Hourly revenue` (
  `region` STRING,
  `orders` BIGINT,
  `revenue` DECIMAL(38, 2),
  `average_price` DECIMAL(38, 6),
  `smallest` DECIMAL(10, 2),
  `largest_quantity` INT,
  `window_start` TIMESTAMP(3),
  `window_end` TIMESTAMP(3),
  `event_time` TIMESTAMP(3)
) WITH (
  'connector' = 'kafka',
  'topic' = 'orders.revenue-hourly.v1',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'format' = 'json'
);

INSERT INTO `Hourly revenue`
SELECT
  `region`,
  `orders`,
  `revenue`,
  `average_price`,
  `smallest`,
  `largest_quantity`,
  `window_start`,
  `window_end`,
  `event_time`
FROM `Revenue per region per hour`;
