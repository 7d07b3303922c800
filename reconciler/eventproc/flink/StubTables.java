/*
 * The source and the sink behind the stub Kafka factories: what the planner asks a
 * table for at planning time (changelog mode, readable and writable metadata,
 * watermark push-down, runtime encoders and decoders of the real formats), and a
 * runtime that does nothing. Nothing here ever connects to a broker.
 */
package dev.flowreconciler.flinkstub;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.configuration.ReadableConfig;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.streaming.api.functions.source.SourceFunction;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.Projection;
import org.apache.flink.table.connector.format.DecodingFormat;
import org.apache.flink.table.connector.format.EncodingFormat;
import org.apache.flink.table.connector.sink.DynamicTableSink;
import org.apache.flink.table.connector.sink.SinkV2Provider;
import org.apache.flink.table.connector.sink.abilities.SupportsWritingMetadata;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.connector.source.ScanTableSource;
import org.apache.flink.table.connector.source.SourceFunctionProvider;
import org.apache.flink.table.connector.source.abilities.SupportsReadingMetadata;
import org.apache.flink.table.connector.source.abilities.SupportsWatermarkPushDown;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.factories.DeserializationFormatFactory;
import org.apache.flink.table.factories.DynamicTableFactory;
import org.apache.flink.table.factories.FactoryUtil;
import org.apache.flink.table.factories.SerializationFormatFactory;
import org.apache.flink.table.types.DataType;
import org.apache.flink.types.RowKind;

public final class StubTables {
    private StubTables() {}

    /** The value format (required), the key format (optional) and the format's name for messages. */
    public record Formats(Object value, Object key, String formatName) {
        boolean hasKeyFormat() { return key != null; }
    }

    static Formats decodingFormats(FactoryUtil.TableFactoryHelper helper) {
        boolean upsert = helper.getOptions().getOptional(FactoryUtil.FORMAT).isEmpty();
        Optional<DecodingFormat<DeserializationSchema<RowData>>> value = upsert
                ? Optional.empty()
                : helper.discoverOptionalDecodingFormat(DeserializationFormatFactory.class, FactoryUtil.FORMAT);
        if (value.isEmpty()) {
            value = helper.discoverOptionalDecodingFormat(DeserializationFormatFactory.class, StubOptions.VALUE_FORMAT);
        }
        if (value.isEmpty()) {
            throw new ValidationException("A value format is required: set 'format' or 'value.format'.");
        }
        Object key = helper.discoverOptionalDecodingFormat(DeserializationFormatFactory.class, StubOptions.KEY_FORMAT)
                .orElse(null);
        return new Formats(value.get(), key, formatName(helper.getOptions()));
    }

    static Formats encodingFormats(FactoryUtil.TableFactoryHelper helper) {
        boolean upsert = helper.getOptions().getOptional(FactoryUtil.FORMAT).isEmpty();
        Optional<EncodingFormat<SerializationSchema<RowData>>> value = upsert
                ? Optional.empty()
                : helper.discoverOptionalEncodingFormat(SerializationFormatFactory.class, FactoryUtil.FORMAT);
        if (value.isEmpty()) {
            value = helper.discoverOptionalEncodingFormat(SerializationFormatFactory.class, StubOptions.VALUE_FORMAT);
        }
        if (value.isEmpty()) {
            throw new ValidationException("A value format is required: set 'format' or 'value.format'.");
        }
        Object key = helper.discoverOptionalEncodingFormat(SerializationFormatFactory.class, StubOptions.KEY_FORMAT)
                .orElse(null);
        return new Formats(value.get(), key, formatName(helper.getOptions()));
    }

    private static String formatName(ReadableConfig options) {
        return options.getOptional(FactoryUtil.FORMAT).orElse(options.getOptional(StubOptions.VALUE_FORMAT).orElse("?"));
    }

    /** The real connector's rules for 'key.fields' (messages as flink-connector-kafka words them). */
    static void validateKeyFields(ReadableConfig options, boolean hasKeyFormat, DynamicTableFactory.Context context) {
        List<String> keyFields = options.get(StubOptions.KEY_FIELDS);
        if (hasKeyFormat && keyFields.isEmpty()) {
            throw new ValidationException("A key format 'key.format' requires the declaration of one or more of key"
                    + " fields using 'key.fields'.");
        }
        if (!hasKeyFormat && !keyFields.isEmpty()) {
            throw new ValidationException("The option 'key.fields' can only be declared if a key format is defined"
                    + " using 'key.format'.");
        }
        List<String> physical = DataType.getFieldNames(context.getPhysicalRowDataType());
        for (String field : keyFields) {
            if (!physical.contains(field)) {
                throw new ValidationException(String.format("Could not find the field '%s' in the table schema for"
                        + " usage in the key format. A key field must be a regular, physical column. The following"
                        + " columns can be selected in the 'key.fields' option:%n%s", field, physical));
            }
        }
    }

    static void refusePrimaryKey(DynamicTableFactory.Context context, String format) {
        if (context.getPrimaryKeyIndexes().length > 0) {
            throw new ValidationException(String.format("The Kafka table '%s' with '%s' format doesn't support"
                    + " defining PRIMARY KEY constraint on the table, because it can't guarantee the semantic of"
                    + " primary key.", context.getObjectIdentifier().asSummaryString(), format));
        }
    }

    static void requirePrimaryKey(DynamicTableFactory.Context context) {
        if (context.getPrimaryKeyIndexes().length == 0) {
            throw new ValidationException("'upsert-kafka' tables require to define a PRIMARY KEY constraint. The"
                    + " PRIMARY KEY specifies which columns should be read from or write to the Kafka message key."
                    + " The PRIMARY KEY also defines records in the 'upsert-kafka' table should update or delete on"
                    + " which keys.");
        }
    }

    /** Indexes of the key columns: 'key.fields' for kafka, the primary key for upsert-kafka. */
    private static int[] keyIndexes(DynamicTableFactory.Context context, boolean upsert) {
        if (upsert) {
            return context.getPrimaryKeyIndexes();
        }
        List<String> physical = DataType.getFieldNames(context.getPhysicalRowDataType());
        ReadableConfig options = Configs.of(context);
        return options.get(StubOptions.KEY_FIELDS).stream().mapToInt(physical::indexOf).toArray();
    }

    private static int[] valueIndexes(DynamicTableFactory.Context context, int[] key) {
        int n = DataType.getFieldCount(context.getPhysicalRowDataType());
        boolean exceptKey = Configs.of(context).get(StubOptions.VALUE_FIELDS_INCLUDE) == StubOptions.FieldsInclude.EXCEPT_KEY;
        List<Integer> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            final int col = i;
            if (!exceptKey || Arrays.stream(key).noneMatch(k -> k == col)) {
                out.add(i);
            }
        }
        return out.stream().mapToInt(Integer::intValue).toArray();
    }

    private static final class Configs {
        static ReadableConfig of(DynamicTableFactory.Context context) {
            return org.apache.flink.configuration.Configuration.fromMap(context.getCatalogTable().getOptions());
        }
    }

    private static ChangelogMode upsertMode() {
        return ChangelogMode.newBuilder().addContainedKind(RowKind.INSERT).addContainedKind(RowKind.UPDATE_AFTER)
                .addContainedKind(RowKind.DELETE).build();
    }

    /** A Kafka source as the planner sees it; reading it yields nothing. */
    public static final class Source implements ScanTableSource, SupportsReadingMetadata, SupportsWatermarkPushDown {
        private final DynamicTableFactory.Context context;
        private final Formats formats;
        private final boolean upsert;
        private List<String> metadataKeys = List.of();
        private WatermarkStrategy<RowData> watermark;

        Source(DynamicTableFactory.Context context, Formats formats, boolean upsert) {
            this.context = context;
            this.formats = formats;
            this.upsert = upsert;
        }

        @Override
        public ChangelogMode getChangelogMode() {
            return upsert ? upsertMode() : value().getChangelogMode();
        }

        @SuppressWarnings("unchecked")
        private DecodingFormat<DeserializationSchema<RowData>> value() {
            return (DecodingFormat<DeserializationSchema<RowData>>) formats.value();
        }

        @Override
        @SuppressWarnings("unchecked")
        public ScanRuntimeProvider getScanRuntimeProvider(ScanContext runtime) {
            DataType physical = context.getPhysicalRowDataType();
            int[] key = keyIndexes(context, upsert);
            value().createRuntimeDecoder(runtime, Projection.of(valueIndexes(context, key)).project(physical));
            if (formats.hasKeyFormat()) {
                ((DecodingFormat<DeserializationSchema<RowData>>) formats.key())
                        .createRuntimeDecoder(runtime, Projection.of(key).project(physical));
            }
            return SourceFunctionProvider.of(new NoEvents(), false);
        }

        @Override
        public Map<String, DataType> listReadableMetadata() {
            Map<String, DataType> m = new LinkedHashMap<>();
            m.put("topic", DataTypes.STRING().notNull());
            m.put("partition", DataTypes.INT().notNull());
            m.put("headers", DataTypes.MAP(DataTypes.STRING().nullable(), DataTypes.BYTES().nullable()).notNull());
            m.put("leader-epoch", DataTypes.INT().nullable());
            m.put("offset", DataTypes.BIGINT().notNull());
            m.put("timestamp", DataTypes.TIMESTAMP_WITH_LOCAL_TIME_ZONE(3).notNull());
            m.put("timestamp-type", DataTypes.STRING().notNull());
            return m;
        }

        @Override
        public void applyReadableMetadata(List<String> keys, DataType producedDataType) {
            this.metadataKeys = List.copyOf(keys);
        }

        @Override
        public void applyWatermark(WatermarkStrategy<RowData> strategy) {
            this.watermark = strategy;
        }

        @Override
        public DynamicTableSource copy() {
            Source s = new Source(context, formats, upsert);
            s.metadataKeys = metadataKeys;
            s.watermark = watermark;
            return s;
        }

        @Override
        public String asSummaryString() {
            return upsert ? "upsert-kafka (planning stub)" : "kafka (planning stub)";
        }
    }

    /** A Kafka sink as the planner sees it; writing to it discards the rows. */
    public static final class Sink implements DynamicTableSink, SupportsWritingMetadata {
        private final DynamicTableFactory.Context context;
        private final Formats formats;
        private final boolean upsert;

        Sink(DynamicTableFactory.Context context, Formats formats, boolean upsert) {
            this.context = context;
            this.formats = formats;
            this.upsert = upsert;
        }

        @SuppressWarnings("unchecked")
        private EncodingFormat<SerializationSchema<RowData>> value() {
            return (EncodingFormat<SerializationSchema<RowData>>) formats.value();
        }

        @Override
        public ChangelogMode getChangelogMode(ChangelogMode requested) {
            return upsert ? upsertMode() : value().getChangelogMode();
        }

        @Override
        @SuppressWarnings("unchecked")
        public SinkRuntimeProvider getSinkRuntimeProvider(Context runtime) {
            DataType physical = context.getPhysicalRowDataType();
            int[] key = keyIndexes(context, upsert);
            value().createRuntimeEncoder(runtime, Projection.of(valueIndexes(context, key)).project(physical));
            if (formats.hasKeyFormat()) {
                ((EncodingFormat<SerializationSchema<RowData>>) formats.key())
                        .createRuntimeEncoder(runtime, Projection.of(key).project(physical));
            }
            return SinkV2Provider.of(new DiscardingSink<RowData>());
        }

        @Override
        public Map<String, DataType> listWritableMetadata() {
            Map<String, DataType> m = new LinkedHashMap<>();
            m.put("headers", DataTypes.MAP(DataTypes.STRING().nullable(), DataTypes.BYTES().nullable()).nullable());
            m.put("timestamp", DataTypes.TIMESTAMP_WITH_LOCAL_TIME_ZONE(3).nullable());
            return m;
        }

        @Override
        public void applyWritableMetadata(List<String> keys, DataType consumedDataType) {}

        @Override
        public DynamicTableSink copy() {
            return new Sink(context, formats, upsert);
        }

        @Override
        public String asSummaryString() {
            return upsert ? "upsert-kafka (planning stub)" : "kafka (planning stub)";
        }
    }

    /** The runtime of the stub source: it ends at once without emitting a row. */
    public static final class NoEvents implements SourceFunction<RowData> {
        @Override
        public void run(SourceContext<RowData> ctx) {}

        @Override
        public void cancel() {}
    }
}
