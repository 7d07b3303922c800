/*
 * The option names of Flink's Kafka connectors (flink-connector-kafka 3.x), as the
 * stub factories declare them. Unknown options are refused by FactoryUtil with
 * Flink's own message, exactly as the real connector refuses them; values of the
 * enumerated options are parsed by Flink, so a misspelt startup mode fails too.
 */
package dev.flowreconciler.flinkstub;

import java.time.Duration;
import java.util.List;
import java.util.Set;

import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.configuration.ReadableConfig;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.factories.FactoryUtil;

public final class StubOptions {
    private StubOptions() {}

    public static final String PROPERTIES_PREFIX = "properties.";

    public enum StartupMode {
        EARLIEST("earliest-offset"), LATEST("latest-offset"), GROUP("group-offsets"),
        TIMESTAMP("timestamp"), SPECIFIC("specific-offsets");
        private final String value;
        StartupMode(String value) { this.value = value; }
        @Override public String toString() { return value; }
    }

    public enum FieldsInclude { ALL, EXCEPT_KEY }

    public enum DeliveryGuarantee {
        EXACTLY_ONCE("exactly-once"), AT_LEAST_ONCE("at-least-once"), NONE("none");
        private final String value;
        DeliveryGuarantee(String value) { this.value = value; }
        @Override public String toString() { return value; }
    }

    public static final ConfigOption<String> BOOTSTRAP_SERVERS =
            ConfigOptions.key("properties.bootstrap.servers").stringType().noDefaultValue();
    public static final ConfigOption<String> GROUP_ID =
            ConfigOptions.key("properties.group.id").stringType().noDefaultValue();
    public static final ConfigOption<List<String>> TOPIC =
            ConfigOptions.key("topic").stringType().asList().noDefaultValue();
    public static final ConfigOption<String> TOPIC_PATTERN =
            ConfigOptions.key("topic-pattern").stringType().noDefaultValue();
    public static final ConfigOption<String> KEY_FORMAT =
            ConfigOptions.key("key.format").stringType().noDefaultValue();
    public static final ConfigOption<String> VALUE_FORMAT =
            ConfigOptions.key("value.format").stringType().noDefaultValue();
    public static final ConfigOption<List<String>> KEY_FIELDS =
            ConfigOptions.key("key.fields").stringType().asList().defaultValues();
    public static final ConfigOption<String> KEY_FIELDS_PREFIX =
            ConfigOptions.key("key.fields-prefix").stringType().noDefaultValue();
    public static final ConfigOption<FieldsInclude> VALUE_FIELDS_INCLUDE =
            ConfigOptions.key("value.fields-include").enumType(FieldsInclude.class).defaultValue(FieldsInclude.ALL);
    public static final ConfigOption<StartupMode> SCAN_STARTUP_MODE =
            ConfigOptions.key("scan.startup.mode").enumType(StartupMode.class).defaultValue(StartupMode.GROUP);
    public static final ConfigOption<String> SCAN_STARTUP_SPECIFIC_OFFSETS =
            ConfigOptions.key("scan.startup.specific-offsets").stringType().noDefaultValue();
    public static final ConfigOption<Long> SCAN_STARTUP_TIMESTAMP_MILLIS =
            ConfigOptions.key("scan.startup.timestamp-millis").longType().noDefaultValue();
    public static final ConfigOption<Duration> SCAN_TOPIC_PARTITION_DISCOVERY =
            ConfigOptions.key("scan.topic-partition-discovery.interval").durationType().noDefaultValue();
    public static final ConfigOption<String> SINK_PARTITIONER =
            ConfigOptions.key("sink.partitioner").stringType().defaultValue("default");
    public static final ConfigOption<DeliveryGuarantee> DELIVERY_GUARANTEE =
            ConfigOptions.key("sink.delivery-guarantee").enumType(DeliveryGuarantee.class)
                    .defaultValue(DeliveryGuarantee.AT_LEAST_ONCE);
    public static final ConfigOption<String> TRANSACTIONAL_ID_PREFIX =
            ConfigOptions.key("sink.transactional-id-prefix").stringType().noDefaultValue();
    public static final ConfigOption<Integer> SINK_BUFFER_FLUSH_MAX_ROWS =
            ConfigOptions.key("sink.buffer-flush.max-rows").intType().defaultValue(0);
    public static final ConfigOption<Duration> SINK_BUFFER_FLUSH_INTERVAL =
            ConfigOptions.key("sink.buffer-flush.interval").durationType().defaultValue(Duration.ZERO);

    public static final Set<ConfigOption<?>> KAFKA_OPTIONAL = Set.of(
            FactoryUtil.FORMAT, KEY_FORMAT, KEY_FIELDS, KEY_FIELDS_PREFIX, VALUE_FORMAT, VALUE_FIELDS_INCLUDE,
            TOPIC, TOPIC_PATTERN, GROUP_ID, SCAN_STARTUP_MODE, SCAN_STARTUP_SPECIFIC_OFFSETS,
            SCAN_STARTUP_TIMESTAMP_MILLIS, SCAN_TOPIC_PARTITION_DISCOVERY, SINK_PARTITIONER,
            FactoryUtil.SINK_PARALLELISM, DELIVERY_GUARANTEE, TRANSACTIONAL_ID_PREFIX);

    public static final Set<ConfigOption<?>> UPSERT_OPTIONAL = Set.of(
            TOPIC, TOPIC_PATTERN, KEY_FIELDS_PREFIX, VALUE_FIELDS_INCLUDE, FactoryUtil.SINK_PARALLELISM,
            SINK_BUFFER_FLUSH_MAX_ROWS, SINK_BUFFER_FLUSH_INTERVAL, DELIVERY_GUARANTEE, TRANSACTIONAL_ID_PREFIX);

    /** A source reads a topic list or a pattern; a sink writes exactly one topic. */
    static void requireTopic(ReadableConfig options, boolean source) {
        boolean topic = options.getOptional(TOPIC).isPresent();
        boolean pattern = options.getOptional(TOPIC_PATTERN).isPresent();
        if (topic && pattern) {
            throw new ValidationException("Option 'topic' and 'topic-pattern' shouldn't be set together.");
        }
        if (source && !topic && !pattern) {
            throw new ValidationException("Either 'topic' or 'topic-pattern' must be set.");
        }
        if (!source && (!topic || options.get(TOPIC).size() != 1)) {
            throw new ValidationException("The sink needs exactly one topic in option 'topic'.");
        }
        if (options.get(SCAN_STARTUP_MODE) == StartupMode.TIMESTAMP
                && options.getOptional(SCAN_STARTUP_TIMESTAMP_MILLIS).isEmpty()) {
            throw new ValidationException("'scan.startup.timestamp-millis' is required in 'timestamp' startup mode"
                    + " but missing.");
        }
    }
}
