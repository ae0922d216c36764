package io.microsandbox;

/**
 * One event of a streamed command, as returned by {@link ExecHandle#recv()}. A stream is
 * {@code Started}, any number of {@code Stdout}/{@code Stderr}, then {@code Exited} or
 * {@code Failed}, then {@code Done}. {@code Done} comes without {@code Exited} when the
 * command's timeout expired ({@link ExecHandle#timedOut()}), the handle was closed or detached,
 * or the sandbox went away.
 */
public sealed interface ExecEvent {

    /** The process is running with this guest pid. */
    record Started(int pid) implements ExecEvent {
    }

    /** A chunk of standard output (all output, for a tty session). */
    record Stdout(byte[] data) implements ExecEvent {
        /**
         * This chunk alone as UTF-8. A chunk ends wherever the guest's read ended, which can
         * be inside a character: for text whole across chunks decode {@link #data()} with one
         * {@link java.nio.charset.CharsetDecoder} over the stream, or use {@link ExecHandle#collect()}.
         */
        public String text() {
            return new String(data, java.nio.charset.StandardCharsets.UTF_8);
        }
    }

    /** A chunk of standard error. */
    record Stderr(byte[] data) implements ExecEvent {
        /** This chunk alone as UTF-8; see {@link Stdout#text()} for text across chunks. */
        public String text() {
            return new String(data, java.nio.charset.StandardCharsets.UTF_8);
        }
    }

    /** The process ended; {@code code} is 128 + n when it was ended by signal n. */
    record Exited(int code, Integer signal) implements ExecEvent {
    }

    /**
     * The process never ran.
     *
     * @param kind    not_found, permission_denied, not_executable, bad_cwd, bad_args,
     *                resource_limit, user_setup_failed, out_of_memory, pty_setup_failed or other;
     *                sandbox_draining when the sandbox refuses new commands (draining or stopping),
     *                sandbox_checkpointing while a checkpoint of it is being taken (try again after)
     * @param errno   the guest errno, 0 when none
     * @param message what the agent said
     * @param stage   where it failed: spawn, user, cwd, pty or exec
     */
    record Failed(String kind, int errno, String message, String stage) implements ExecEvent {
    }

    /** The stream is over; nothing follows. */
    record Done() implements ExecEvent {
    }
}
