package io.microsandbox;

import io.microsandbox.runtime.Posix;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;

/**
 * {@link Sandbox#attach}: the caller's terminal bridged to a tty session in the guest. Raw
 * mode on the host terminal for the duration, the window size forwarded (on SIGWINCH, and
 * checked at every poll), {@code Ctrl-] Ctrl-]} detaches, and the terminal is restored on
 * every way out: the command's end, a detach, an exception, an interrupt, and the JVM's
 * shutdown (a hook).
 */
final class Attach {
    /** Ctrl-]: twice in a row detaches. */
    static final int DETACH_KEY = 0x1d;
    private static final int STDIN = 0;
    private static final int POLL_MS = 100;
    /** How often a full input queue looks for the guest's credit. */
    private static final int CREDIT_POLL_MS = 10;

    private Attach() {
    }

    static int run(Sandbox sandbox, String command, List<String> args) {
        if (!Posix.isatty(STDIN)) {
            throw new MicrosandboxException(ErrorKind.UNSUPPORTED_OPERATION, "attach needs a terminal on stdin; use execStream(...) with tty(...) instead");
        }
        int[] size = size(new int[] {24, 80});
        String term = System.getenv("TERM");
        ExecOptions options = ExecOptions.builder().tty(size[0], size[1]).stdinPipe()
                .env("TERM", term == null || term.isEmpty() ? "xterm" : term).build();
        OutputStream out = new FileOutputStream(FileDescriptor.out);
        byte[] saved;
        try {
            saved = Posix.enterRawMode(STDIN);
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot put the terminal into raw mode: " + e.getMessage(), e);
        }
        AtomicBoolean restored = new AtomicBoolean();
        Runnable restore = () -> {
            if (restored.compareAndSet(false, true)) {
                try {
                    Posix.restoreMode(STDIN, saved);
                } catch (IOException ignored) {
                    // the terminal is gone
                }
            }
        };
        Thread hook = new Thread(restore, "msb-attach-restore");
        Runtime.getRuntime().addShutdownHook(hook);
        AtomicBoolean winch = new AtomicBoolean();
        Object previousWinch = Winch.install(winch);
        ExecHandle handle = null;
        Thread pump = null;
        boolean detached = false;
        AtomicReference<Object> end = new AtomicReference<>();
        // set once detached: output still queued is not written over what the caller prints next
        AtomicBoolean quiet = new AtomicBoolean();
        try {
            handle = sandbox.execStream(command, args, options);
            ExecHandle h = handle;
            pump = new Thread(() -> {
                try {
                    ExecEvent e;
                    while ((e = h.recv()) != null) {
                        if (quiet.get()) {
                            continue;
                        }
                        if (e instanceof ExecEvent.Stdout s) {
                            out.write(s.data());
                            out.flush();
                        } else if (e instanceof ExecEvent.Stderr s) {
                            out.write(s.data());
                            out.flush();
                        } else if (e instanceof ExecEvent.Exited x) {
                            end.compareAndSet(null, x);
                        } else if (e instanceof ExecEvent.Failed f) {
                            end.compareAndSet(null, f);
                        }
                    }
                } catch (Throwable ex) { // whatever ends the pump ends the attach, and is reported
                    end.compareAndSet(null, ex);
                } finally {
                    end.compareAndSet(null, "gone");
                }
            }, "msb-attach-output");
            pump.setDaemon(true);
            pump.start();

            byte[] buf = new byte[4096];
            boolean escape = false;
            boolean terminalOpen = true;
            boolean stdinOpen = true;
            // keys the guest has not taken yet: the terminal is read on while the guest takes
            // no input (paused, or a process that does not read), so that the detach keys
            // work; a full queue (a paste of megabytes) holds the terminal back instead, in
            // its own buffers: nothing typed is ever dropped
            PendingInput pending = new PendingInput();
            while (end.get() == null) {
                if (Thread.interrupted()) {
                    throw new InterruptedException(); // the terminal read below does not see interrupts
                }
                // SIGWINCH sets the flag; the size is also compared at every poll, so a
                // signal the JDK does not deliver is not missed for long
                winch.set(false);
                int[] now = size(size);
                if (now[0] != size[0] || now[1] != size[1]) {
                    size = now;
                    handle.resize(size[0], size[1]);
                }
                if (stdinOpen) {
                    try {
                        pending.sendTo(handle);
                        if (!terminalOpen && pending.isEmpty()) {
                            stdinOpen = false;
                            handle.stdin().close();
                        }
                    } catch (IOException e) {
                        stdinOpen = false; // the process closed its terminal; wait for its end
                    }
                }
                if (!terminalOpen) {
                    Thread.sleep(POLL_MS);
                    continue;
                }
                if (stdinOpen && pending.isFull()) {
                    Thread.sleep(CREDIT_POLL_MS);
                    continue;
                }
                int n = Posix.readTimeout(STDIN, buf, POLL_MS);
                if (n < 0) {
                    terminalOpen = false;
                    continue;
                }
                for (int i = 0; i < n && !detached; i++) {
                    int b = buf[i] & 0xff;
                    if (escape) {
                        escape = false;
                        if (b == DETACH_KEY) {
                            detached = true;
                            break;
                        }
                        forward(pending, stdinOpen, DETACH_KEY);
                        forward(pending, stdinOpen, b);
                    } else if (b == DETACH_KEY) {
                        escape = true;
                    } else {
                        forward(pending, stdinOpen, b);
                    }
                }
                if (detached) {
                    break;
                }
                if (stdinOpen) {
                    try {
                        pending.sendTo(handle);
                    } catch (IOException e) {
                        stdinOpen = false;
                    }
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "attach to '" + command + "' was interrupted");
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "attach to '" + command + "' failed: " + e.getMessage(), e);
        } finally {
            quiet.set(detached);
            try {
                if (handle != null) {
                    if (detached) {
                        handle.detach(); // fails when the connection went first: the caller is told
                    } else {
                        handle.close(); // after its end a no-op; otherwise the command is not left behind
                    }
                }
            } finally {
                if (pump != null) {
                    // its last writes land before the terminal is restored, and none after attach returns
                    try {
                        pump.join(2000);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
                restore.run();
                try {
                    Runtime.getRuntime().removeShutdownHook(hook);
                } catch (IllegalStateException ignored) {
                    // shutting down: the hook runs (and finds the terminal restored)
                }
                Winch.restore(previousWinch);
            }
        }
        if (detached) {
            return Sandbox.ATTACH_DETACHED;
        }
        Object result = end.get();
        if (result instanceof ExecEvent.Exited x) {
            return x.code();
        }
        if (result instanceof ExecEvent.Failed f) {
            throw ExecHandle.notRun(command, f);
        }
        if (result instanceof MicrosandboxException m) {
            throw m;
        }
        if (result instanceof IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot write the output of '" + command + "': " + e.getMessage()
                    + "; the command was killed", e);
        }
        if (result instanceof Throwable t) {
            throw new MicrosandboxException(ErrorKind.INTERNAL, "the output of '" + command + "' could not be shown: " + t
                    + "; the command was killed", t);
        }
        throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "sandbox '" + sandbox.name() + "' went away while '" + command + "' ran");
    }

    private static int[] size(int[] fallback) {
        try {
            int[] s = Posix.windowSize(STDIN);
            return s[0] > 0 && s[1] > 0 ? s : fallback;
        } catch (IOException e) {
            return fallback;
        }
    }

    /** SIGWINCH through sun.misc.Signal where the JDK has it; without it, the size is polled. */
    private static final class Winch {
        static Object install(AtomicBoolean flag) {
            try {
                sun.misc.Signal sig = new sun.misc.Signal("WINCH");
                return sun.misc.Signal.handle(sig, s -> flag.set(true));
            } catch (Throwable e) {
                return null;
            }
        }

        static void restore(Object previous) {
            if (previous instanceof sun.misc.SignalHandler h) {
                try {
                    sun.misc.Signal.handle(new sun.misc.Signal("WINCH"), h);
                } catch (Throwable ignored) {
                    // nothing to restore
                }
            }
        }
    }

    /** Queues a key for the guest; once the process closed its input, keys only count for the detach sequence. */
    private static void forward(PendingInput pending, boolean stdinOpen, int b) {
        if (stdinOpen) {
            pending.add(b);
        }
    }

    /** Terminal input waiting for the guest's stdin credit. */
    static final class PendingInput {
        /** A paste's worth, beyond the guest's stdin window; typing never gets near it. */
        static final int MAX_BYTES = 1 << 20;
        private byte[] bytes = new byte[4096];
        private int length;

        /** Adds a byte; the queue grows past {@link #MAX_BYTES} by what one read of the terminal gives at most. */
        void add(int b) {
            if (length == bytes.length) {
                bytes = java.util.Arrays.copyOf(bytes, bytes.length * 2);
            }
            bytes[length++] = (byte) b;
        }

        boolean isEmpty() {
            return length == 0;
        }

        /** Full: the terminal is not read until the guest takes some. */
        boolean isFull() {
            return length >= MAX_BYTES;
        }

        /** Sends what the guest's credit allows now and keeps the rest. */
        void sendTo(ExecHandle handle) throws IOException {
            if (length > 0) {
                int sent = handle.offerStdin(bytes, 0, length);
                System.arraycopy(bytes, sent, bytes, 0, length - sent);
                length -= sent;
            }
        }
    }
}
