package io.microsandbox;

import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.util.List;

/**
 * The terminal side of {@link SandboxAttachIT}, run on a pseudo-terminal (tmux): connects to
 * a running sandbox, notes the terminal settings ({@code stty -g}), attaches to its shell, and
 * afterwards prints {@code ATTACH-RESULT <code>}, whether the settings came back
 * ({@code RESTORED true}) and, after a detach, whether the shell still runs in the guest.
 */
public final class AttachChildJvm {
    private AttachChildJvm() {
    }

    public static void main(String[] args) throws Exception {
        Sandbox sb = Sandbox.connect(args[0]);
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
