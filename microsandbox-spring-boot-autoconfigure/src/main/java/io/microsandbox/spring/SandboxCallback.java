package io.microsandbox.spring;

/**
 * Work done on one lent sandbox, over several steps: every call on the {@link SandboxOperations}
 * passed in goes to the same sandbox, which goes back to the pool when the callback returns or throws.
 *
 * @param <T> the result type
 */
@FunctionalInterface
public interface SandboxCallback<T> {

    T doInSandbox(SandboxOperations sandbox);
}
