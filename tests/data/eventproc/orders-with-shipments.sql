-- Flow: orders-with-shipments
-- Version: 3
-- Kind: event-processing
-- Id: orders-with-shipments@3
-- Rendered by flow-reconciler from the flow's JSON; edit the flow, not this file.

CREATE TABLE `Orders` (
  `order_id` STRING,
  `customer_id` STRING,
  `price` DECIMAL(10, 2),
  `event_time` TIMESTAMP(3) METADATA FROM 'timestamp',
  WATERMARK FOR `event_time` AS `event_time` - INTERVAL '10' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = 'orders.v1',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'scan.startup.mode' = 'earliest-offset',
  'format' = 'json'
);

CREATE TABLE `Shipments` (
  `shipment_id` STRING,
  `order_id` STRING,
  `carrier` STRING,
  `shipped_at` TIMESTAMP(3),
  `event_time` AS `shipped_at`,
  WATERMARK FOR `event_time` AS `event_time` - INTERVAL '1' MINUTE
) WITH (
  'connector' = 'kafka',
  'topic' = 'shipments.v1',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'scan.startup.mode' = 'earliest-offset',
  'format' = 'json'
);

CREATE TEMPORARY VIEW `Orders shipped within 2 days` AS
SELECT
  o.order_id AS `order_id`,
  o.customer_id AS `customer_id`,
  o.price AS `price`,
  s.carrier AS `carrier`,
  CAST((o.event_time) AS TIMESTAMP(3)) AS `ordered_at`,
  CAST((TIMESTAMPDIFF(HOUR, o.event_time, s.event_time)) AS INT) AS `hours_to_ship`,
  `s`.`event_time` AS `event_time`
FROM `Orders` AS `o`
INNER JOIN `Shipments` AS `s`
  ON (o.order_id = s.order_id)
  AND `s`.`event_time` BETWEEN `o`.`event_time` - INTERVAL '0' SECOND AND `o`.`event_time` + INTERVAL '2' DAY;

CREATE TEMPORARY VIEW `Shipping speed` AS
SELECT
  `order_id`,
  `customer_id`,
  `price`,
  `carrier`,
  `ordered_at`,
  `hours_to_ship`,
  `event_time`,
  CAST((CASE WHEN hours_to_ship < 24 THEN 'fast' ELSE 'slow' END) AS STRING) AS `speed`
FROM `Orders shipped within 2 days`;

CREATE TABLE `Shipped orders` (
  `order_id` STRING,
  `customer_id` STRING,
  `price` DECIMAL(10, 2),
  `carrier` STRING,
  `ordered_at` TIMESTAMP(3),
  `hours_to_ship` INT,
  `event_time` TIMESTAMP(3),
  `speed` STRING
) WITH (
  'connector' = 'kafka',
  'topic' = 'orders.shipped.v1',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'format' = 'json'
);

INSERT INTO `Shipped orders`
SELECT
  `order_id`,
  `customer_id`,
  `price`,
  `carrier`,
  `ordered_at`,
  `hours_to_ship`,
  `event_time`,
  `speed`
FROM `Shipping speed`;
