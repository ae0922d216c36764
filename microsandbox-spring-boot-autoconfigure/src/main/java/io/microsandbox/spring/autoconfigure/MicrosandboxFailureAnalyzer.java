package io.microsandbox.spring.autoconfigure;

import org.springframework.boot.diagnostics.AbstractFailureAnalyzer;
import org.springframework.boot.diagnostics.FailureAnalysis;

/** Explains a bad {@code microsandbox.*} value or a missing QEMU or kernel, and what to change. */
public class MicrosandboxFailureAnalyzer extends AbstractFailureAnalyzer<MicrosandboxConfigurationException> {

    @Override
    protected FailureAnalysis analyze(Throwable rootFailure, MicrosandboxConfigurationException cause) {
        return new FailureAnalysis(cause.getMessage(), cause.getAction(), cause);
    }
}
