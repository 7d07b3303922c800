-- Flow: large-payments-secured
-- Version: 4
-- Kind: event-processing
-- Id: large-payments-secured@4
-- Rendered by flow-reconciler from the flow's JSON; edit the flow, not this file.

CREATE TABLE `Payments (secured)` (
  `payment_id` STRING,
  `amount` DOUBLE,
  `currency` STRING,
  `event_time` TIMESTAMP(3) METADATA FROM 'timestamp',
  WATERMARK FOR `event_time` AS `event_time` - INTERVAL '5' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = 'payments.v1',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'properties.group.id' = 'large-payments',
  'scan.startup.mode' = 'group-offsets',
  'format' = 'json',
  'properties.security.protocol' = 'SASL_SSL',
  'properties.sasl.mechanism' = 'SCRAM-SHA-512',
  'properties.sasl.jaas.config' = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="flow-reconciler" password="s3cr\"et;pa''ss";',
  'properties.ssl.truststore.location' = '/etc/flink/secrets/kafka-truststore.p12',
  'properties.ssl.truststore.password' = 'changeit',
  'properties.ssl.truststore.type' = 'PKCS12'
);

CREATE TEMPORARY VIEW `Large payments` AS
SELECT
  `payment_id`,
  `amount`,
  `currency`,
  `event_time`
FROM `Payments (secured)`
WHERE (amount >= 1000);

CREATE TABLE `Large payments out` (
  `payment_id` STRING,
  `amount` DOUBLE,
  `currency` STRING,
  `event_time` TIMESTAMP(3)
) WITH (
  'connector' = 'kafka',
  'topic' = 'payments.large',
  'properties.bootstrap.servers' = 'kafka-0.acceptance.example.com:9093,kafka-1.acceptance.example.com:9093',
  'key.format' = 'json',
  'key.fields' = 'payment_id',
  'value.format' = 'json',
  'properties.security.protocol' = 'SASL_SSL',
  'properties.sasl.mechanism' = 'SCRAM-SHA-512',
  'properties.sasl.jaas.config' = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="flow-reconciler" password="s3cr\"et;pa''ss";',
  'properties.ssl.truststore.location' = '/etc/flink/secrets/kafka-truststore.p12',
  'properties.ssl.truststore.password' = 'changeit',
  'properties.ssl.truststore.type' = 'PKCS12'
);

INSERT INTO `Large payments out`
SELECT
  `payment_id`,
  `amount`,
  `currency`,
  `event_time`
FROM `Large payments`;
