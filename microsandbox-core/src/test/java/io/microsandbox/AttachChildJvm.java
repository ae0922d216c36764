package io.microsandbox;

import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.util.List;

/**
 * The terminal side of {@link SandboxAttachIT}, run on a pseudo-terminal (tmux): connects to
 * a running sandbox, notes the terminal settings ({@code stty -g}), attaches to its shell, and
 * afterwards prints {@code ATTACH-RESULT <code>}, whether the settings came back
 * ({@code RESTORED true}) and, after a detach, whether the shell still runs in the guest.
 * A second argument makes an attach to {@code sleep 1234} fail: {@code closed-stdout} closes
 * this JVM's stdout first, {@code interrupt} interrupts the attaching thread after two
 * seconds; the error's kind is printed on stderr as {@code ATTACH-ERROR <kind>}, and how many
 * of those sleeps still run in the guest as {@code SLEEPING <n>}.
 */
public final class AttachChildJvm {
    private AttachChildJvm() {
    }

    public static void main(String[] args) throws Exception {
        Sandbox sb = Sandbox.connect(args[0]);
        if (args.length > 1) {
            failAttach(sb, args[1]);
            return;
        }
        String before = stty();
        int code = sb.attachShell();
        String after = stty();
        System.out.println();
        System.out.println("ATTACH-RESULT " + code);
        System.out.println("RESTORED " + (before.equals(after) && !before.isEmpty()));
        if (code == Sandbox.ATTACH_DETACHED) {
            ExecOutput alive = sb.exec("sh", List.of("-c", "kill -0 $(cat /tmp/attached.pid) && echo alive || echo gone"));
            System.out.println("SHELL " + alive.stdout().trim());
        }
        System.out.println("CHILD-DONE");
        System.out.flush();
        sb.detach();
        // keep the pane open for the test to read
        Thread.sleep(60_000);
        System.exit(0);
    }

    private static void failAttach(Sandbox sb, String how) throws Exception {
        if (how.equals("closed-stdout")) {
            System.out.close();
        } else {
            Thread attaching = Thread.currentThread();
            Thread interrupter = new Thread(() -> {
                try {
                    Thread.sleep(2000);
                } catch (InterruptedException ignored) {
                    return;
                }
                attaching.interrupt();
            });
            interrupter.setDaemon(true);
            interrupter.start();
        }
        try {
            System.err.println("ATTACH-RESULT " + sb.attach("sh", "-c", "echo attached; exec sleep 1234"));
        } catch (MicrosandboxException e) {
            Thread.interrupted();
            System.err.println("\r\nATTACH-ERROR " + e.kind());
        }
        // a killed process may be a moment away from its end
        ExecOutput sleeping = sb.exec("sh", List.of("-c", "for i in 1 2 3 4 5; do pgrep -f '^sleep 1234$' > /dev/null || break;"
                + " sleep 0.2; done; pgrep -c -f '^sleep 1234$' || true"));
        System.err.println("\r\nSLEEPING " + sleeping.stdout().trim());
        System.err.println("CHILD-DONE");
        sb.detach();
        Thread.sleep(60_000);
        System.exit(0);
    }

    private static String stty() throws Exception {
        Process p = new ProcessBuilder("stty", "-g").redirectInput(ProcessBuilder.Redirect.INHERIT).start();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (InputStream in = p.getInputStream()) {
            in.transferTo(out);
        }
        p.waitFor();
        return out.toString().trim();
    }
}
