-- Flow: fraud-score-custom-sql
-- Version: 1
-- Kind: event-processing
-- Id: fraud-score-custom-sql@1
-- Rendered by flow-reconciler from the flow's JSON; edit the flow, not this file.

CREATE TABLE `Payments` (
  `payment_id` STRING,
  `card` STRING,
  `amount` DOUBLE,
  `country` STRING,
  `card_country` STRING,
  `event_time` TIMESTAMP(3) METADATA FROM 'timestamp',
  WATERMARK FOR `event_time` AS `event_time` - INTERVAL '5' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = 'payments.v1',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'scan.startup.mode' = 'earliest-offset',
  'format' = 'json'
);

CREATE TEMPORARY VIEW `Fraud score` AS
WITH `input` AS (
  SELECT
    `payment_id`,
    `card`,
    `amount`,
    `country`,
    `card_country`,
    `event_time`
  FROM `Payments`
)
SELECT
  CAST(`payment_id` AS STRING) AS `payment_id`,
  CAST(`card` AS STRING) AS `card`,
  CAST(`amount` AS DOUBLE) AS `amount`,
  CAST(`score` AS INT) AS `score`,
  `event_time`
FROM (
SELECT
  payment_id,
  card,
  amount,
  CASE WHEN country <> card_country THEN 50 ELSE 0 END
    + CASE WHEN amount > 5000 THEN 40 WHEN amount > 1000 THEN 20 ELSE 0 END AS score,
  event_time
FROM input
WHERE card IS NOT NULL -- payments without a card are scored elsewhere
) AS `q`;

CREATE TEMPORARY VIEW `Risky payments` AS
SELECT
  `payment_id`,
  `card`,
  `amount`,
  `score`,
  `event_time`
FROM `Fraud score`
WHERE (score >= 50);

CREATE TABLE `Payments to review` (
  `payment_id` STRING,
  `card` STRING,
  `amount` DOUBLE,
  `score` INT,
  `event_time` TIMESTAMP(3)
) WITH (
  'connector' = 'kafka',
  'topic' = 'payments.review',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'format' = 'json'
);

INSERT INTO `Payments to review`
SELECT
  `payment_id`,
  `card`,
  `amount`,
  `score`,
  `event_time`
FROM `Risky payments`;
