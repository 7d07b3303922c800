-- Flow: order-lines-per-sku
-- Version: 1
-- Kind: event-processing
-- Id: order-lines-per-sku@1
-- Rendered by flow-reconciler from the flow's JSON; edit the flow, not this file.

CREATE TABLE `Orders with lines` (
  `order_id` STRING,
  `store` STRING,
  `lines` ARRAY<ROW<`sku` STRING, `qty` INT, `unit_price` DOUBLE>>,
  `event_time` TIMESTAMP(3) METADATA FROM 'timestamp',
  WATERMARK FOR `event_time` AS `event_time` - INTERVAL '5' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = 'orders.v2',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'scan.startup.mode' = 'earliest-offset',
  'format' = 'json'
);

CREATE TEMPORARY VIEW `Order lines` AS
SELECT
  `i`.`order_id`,
  `i`.`store`,
  `i`.`event_time`,
  `u`.`sku`,
  `u`.`qty`,
  `u`.`unit_price`
FROM `Orders with lines` AS `i`
CROSS JOIN UNNEST(`i`.`lines`) AS `u` (`sku`, `qty`, `unit_price`);

CREATE TEMPORARY VIEW `Units per SKU` AS
SELECT
  `sku`,
  `store`,
  SUM(`qty`) AS `units`,
  MAX(`unit_price`) AS `highest_price`,
  `window_start`,
  `window_end`,
  `window_time` AS `event_time`
FROM TABLE(
  TUMBLE(TABLE `Order lines`, DESCRIPTOR(`event_time`), INTERVAL '15' MINUTE))
GROUP BY `window_start`, `window_end`, `window_time`, `sku`, `store`;

CREATE TABLE `SKU sales` (
  `sku` STRING,
  `store` STRING,
  `units` INT,
  `highest_price` DOUBLE,
  `window_start` TIMESTAMP(3),
  `window_end` TIMESTAMP(3),
  `event_time` TIMESTAMP(3)
) WITH (
  'connector' = 'kafka',
  'topic' = 'sales.sku-15min',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'format' = 'json'
);

INSERT INTO `SKU sales`
SELECT
  `sku`,
  `store`,
  `units`,
  `highest_price`,
  `window_start`,
  `window_end`,
  `event_time`
FROM `Units per SKU`;
