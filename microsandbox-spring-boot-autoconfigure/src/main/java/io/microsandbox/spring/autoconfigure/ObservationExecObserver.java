package io.microsandbox.spring.autoconfigure;

import io.microsandbox.ExecOutput;
import io.microsandbox.spring.pool.ExecObserver;
import io.micrometer.observation.Observation;
import io.micrometer.observation.ObservationRegistry;
import java.util.function.Supplier;
import org.springframework.beans.factory.ObjectProvider;

/**
 * Wraps each command in an Observation named {@code microsandbox.exec}, low-cardinality keys
 * {@code pool}, {@code operation} and {@code outcome}: a timer with metrics, a span with tracing.
 */
public class ObservationExecObserver implements ExecObserver {

    /** The observation's name. */
    public static final String NAME = "microsandbox.exec";

    private final ObjectProvider<ObservationRegistry> registry;

    public ObservationExecObserver(ObjectProvider<ObservationRegistry> registry) {
        this.registry = registry;
    }

    @Override
    public ExecOutput observe(String pool, String operation, Supplier<ExecOutput> call) {
        ObservationRegistry r = registry.getIfAvailable(() -> ObservationRegistry.NOOP);
        Observation observation = Observation.createNotStarted(NAME, r)
                .contextualName("microsandbox " + operation)
                .lowCardinalityKeyValue("pool", pool)
                .lowCardinalityKeyValue("operation", operation)
                .start();
        ExecOutput out = null;
        Throwable error = null;
        try (Observation.Scope scope = observation.openScope()) {
            out = call.get();
            return out;
        } catch (RuntimeException | Error e) {
            error = e;
            observation.error(e);
            throw e;
        } finally {
            observation.lowCardinalityKeyValue("outcome", ExecObserver.outcome(out, error));
            observation.stop();
        }
    }
}
