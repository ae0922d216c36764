package io.microsandbox.spring.pool;

import io.microsandbox.ExecOutput;
import java.util.function.Supplier;

/**
 * Wraps every command {@link io.microsandbox.spring.SandboxTemplate} runs; the Micrometer
 * Observation implementation records {@code microsandbox.exec}. {@link #NOOP} when Micrometer is absent.
 */
public interface ExecObserver {

    ExecObserver NOOP = new ExecObserver() {
        @Override
        public ExecOutput observe(String pool, String operation, Supplier<ExecOutput> call) {
            return call.get();
        }
    };

    ExecOutput observe(String pool, String operation, Supplier<ExecOutput> call);

    /**
     * The low-cardinality outcome tag of a finished command: {@code error} also when neither an
     * output nor an exception was seen (an {@link Error} went through).
     */
    static String outcome(ExecOutput output, Throwable error) {
        if (output == null && error == null) {
            return "error";
        }
        if (error != null) {
            return error instanceof io.microsandbox.spring.SandboxTimeoutException ? "timeout"
                    : error instanceof io.microsandbox.spring.SandboxLostException ? "lost"
                    : error instanceof io.microsandbox.spring.SandboxInterruptedException ? "cancelled"
                    : error instanceof io.microsandbox.spring.SandboxPoolExhaustedException ? "exhausted" : "error";
        }
        return output.exitCode() == 0 ? "success" : "nonzero-exit";
    }
}
