/*
 * A planning-only stand-in for Flink's 'kafka' table connector (flow-reconciler).
 *
 * No Kafka connector jar can be installed here, so the planner check registers this
 * factory under the real identifier. It declares the real connector's option names,
 * discovers the real format factories (flink-json) so their options are validated,
 * reads the same metadata ('timestamp', 'partition', ...), accepts watermark push-down
 * and reports the real changelog modes: 'kafka' is insert-only in both directions.
 * Its runtime does nothing: it exists so that EXPLAIN can plan a statement.
 */
package dev.flowreconciler.flinkstub;

import java.util.Set;

import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.connector.sink.DynamicTableSink;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.factories.DynamicTableSinkFactory;
import org.apache.flink.table.factories.DynamicTableSourceFactory;
import org.apache.flink.table.factories.FactoryUtil;

public final class StubKafkaFactory implements DynamicTableSourceFactory, DynamicTableSinkFactory {

    @Override
    public String factoryIdentifier() {
        return "kafka";
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Set.of(StubOptions.BOOTSTRAP_SERVERS);
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return StubOptions.KAFKA_OPTIONAL;
    }

    @Override
    public DynamicTableSource createDynamicTableSource(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        StubTables.Formats formats = StubTables.decodingFormats(helper);
        helper.validateExcept(StubOptions.PROPERTIES_PREFIX);
        StubOptions.requireTopic(helper.getOptions(), true);
        StubTables.validateKeyFields(helper.getOptions(), formats.hasKeyFormat(), context);
        StubTables.refusePrimaryKey(context, formats.formatName());
        return new StubTables.Source(context, formats, false);
    }

    @Override
    public DynamicTableSink createDynamicTableSink(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        StubTables.Formats formats = StubTables.encodingFormats(helper);
        helper.validateExcept(StubOptions.PROPERTIES_PREFIX);
        StubOptions.requireTopic(helper.getOptions(), false);
        StubTables.validateKeyFields(helper.getOptions(), formats.hasKeyFormat(), context);
        StubTables.refusePrimaryKey(context, formats.formatName());
        return new StubTables.Sink(context, formats, false);
    }
}
