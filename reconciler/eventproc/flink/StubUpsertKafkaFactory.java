/*
 * A planning-only stand-in for Flink's 'upsert-kafka' table connector (flow-reconciler).
 *
 * Like StubKafkaFactory, with the rules of the real upsert connector: a PRIMARY KEY is
 * required (it is the Kafka message key), 'key.format' and 'value.format' are required,
 * and both the source and the sink speak the upsert changelog (INSERT, UPDATE_AFTER,
 * DELETE), so an aggregate without a window can be written to it.
 */
package dev.flowreconciler.flinkstub;

import java.util.Set;

import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.table.connector.sink.DynamicTableSink;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.factories.DynamicTableSinkFactory;
import org.apache.flink.table.factories.DynamicTableSourceFactory;
import org.apache.flink.table.factories.FactoryUtil;

public final class StubUpsertKafkaFactory implements DynamicTableSourceFactory, DynamicTableSinkFactory {

    @Override
    public String factoryIdentifier() {
        return "upsert-kafka";
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Set.of(StubOptions.BOOTSTRAP_SERVERS, StubOptions.KEY_FORMAT, StubOptions.VALUE_FORMAT);
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return StubOptions.UPSERT_OPTIONAL;
    }

    @Override
    public DynamicTableSource createDynamicTableSource(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        StubTables.Formats formats = StubTables.decodingFormats(helper);
        helper.validateExcept(StubOptions.PROPERTIES_PREFIX);
        StubOptions.requireTopic(helper.getOptions(), true);
        StubTables.requirePrimaryKey(context);
        return new StubTables.Source(context, formats, true);
    }

    @Override
    public DynamicTableSink createDynamicTableSink(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        StubTables.Formats formats = StubTables.encodingFormats(helper);
        helper.validateExcept(StubOptions.PROPERTIES_PREFIX);
        StubOptions.requireTopic(helper.getOptions(), false);
        StubTables.requirePrimaryKey(context);
        return new StubTables.Sink(context, formats, true);
    }
}
