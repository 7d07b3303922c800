-- Flow: order-totals
-- Version: 2
-- Kind: event-processing
-- Id: order-totals@2
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

CREATE TEMPORARY VIEW `Add totals` AS
SELECT
  `order_id`,
  `customer_id`,
  `price`,
  `quantity`,
  `event_time`,
  CAST((price * quantity) AS DECIMAL(12, 2)) AS `total`,
  CAST((UPPER(TRIM(region))) AS STRING) AS `region_code`,
  CAST((quantity >= 100) AS BOOLEAN) AS `bulk`
FROM `Orders`;

CREATE TABLE `Order totals` (
  `order_id` STRING,
  `customer_id` STRING,
  `price` DECIMAL(10, 2),
  `quantity` INT,
  `event_time` TIMESTAMP(3),
  `total` DECIMAL(12, 2),
  `region_code` STRING,
  `bulk` BOOLEAN
) WITH (
  'connector' = 'kafka',
  'topic' = 'orders.totals.v1',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'key.format' = 'json',
  'key.fields' = 'order_id',
  'value.format' = 'json'
);

INSERT INTO `Order totals`
SELECT
  `order_id`,
  `customer_id`,
  `price`,
  `quantity`,
  `event_time`,
  `total`,
  `region_code`,
  `bulk`
FROM `Add totals`;
