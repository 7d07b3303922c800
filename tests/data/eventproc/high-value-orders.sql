-- Flow: high-value-orders
-- Version: 1
-- Kind: event-processing
-- Id: high-value-orders@1
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

CREATE TEMPORARY VIEW `High value EU orders` AS
SELECT
  `order_id`,
  `customer_id`,
  `region`,
  `price`,
  `quantity`,
  `event_time`
FROM `Orders`
WHERE (price > 500 AND region IN ('EU', 'UK'));

CREATE TABLE `High value orders` (
  `order_id` STRING,
  `customer_id` STRING,
  `region` STRING,
  `price` DECIMAL(10, 2),
  `quantity` INT,
  `event_time` TIMESTAMP(3)
) WITH (
  'connector' = 'kafka',
  'topic' = 'orders.high-value.v1',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'format' = 'json'
);

INSERT INTO `High value orders`
SELECT
  `order_id`,
  `customer_id`,
  `region`,
  `price`,
  `quantity`,
  `event_time`
FROM `High value EU orders`;
