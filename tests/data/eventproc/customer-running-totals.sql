-- Flow: customer-running-totals
-- Version: 1
-- Kind: event-processing
-- Id: customer-running-totals@1
-- Rendered by flow-reconciler from the flow's JSON; edit the flow, not this file.

CREATE TABLE `Orders` (
  `order_id` STRING,
  `customer_id` STRING,
  `price` DECIMAL(10, 2),
  `event_time` TIMESTAMP(3) METADATA FROM 'timestamp',
  WATERMARK FOR `event_time` AS `event_time` - INTERVAL '5' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = 'orders.v1',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'scan.startup.mode' = 'earliest-offset',
  'format' = 'json'
);

CREATE TEMPORARY VIEW `Totals per customer` AS
SELECT
  `customer_id`,
  COUNT(*) AS `orders`,
  SUM(`price`) AS `spent`
FROM `Orders`
GROUP BY `customer_id`;

CREATE TEMPORARY VIEW `VIP flag` AS
SELECT
  `customer_id`,
  `orders`,
  `spent`,
  CAST((spent > 10000) AS BOOLEAN) AS `vip`
FROM `Totals per customer`;

CREATE TABLE `Customer totals` (
  `customer_id` STRING,
  `orders` BIGINT,
  `spent` DECIMAL(38, 2),
  `vip` BOOLEAN,
  PRIMARY KEY (`customer_id`) NOT ENFORCED
) WITH (
  'connector' = 'upsert-kafka',
  'topic' = 'customers.totals',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'key.format' = 'json',
  'value.format' = 'json'
);

INSERT INTO `Customer totals`
SELECT
  `customer_id`,
  `orders`,
  `spent`,
  `vip`
FROM `VIP flag`;
