package io.microsandbox.samples;

import io.microsandbox.PullProgressListener;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A one-line progress bar for image pulls on the terminal: all layers together, redrawn in
 * place ({@code \r}), with the phase of the layer that moved last.
 */
public final class PullProgressBar implements PullProgressListener {
    private final Map<String, long[]> layers = new LinkedHashMap<>();
    private long lastDraw;

    @Override
    public synchronized void onProgress(String image, String digest, Phase phase, long done, long total) {
        if (digest != null) {
            long[] state = layers.computeIfAbsent(digest, d -> new long[2]);
            state[1] = Math.max(state[1], total);
            if (phase == Phase.DOWNLOADING || phase == Phase.CACHED || phase == Phase.DONE) {
                state[0] = phase == Phase.DOWNLOADING ? done : state[1];
            }
        }
        long now = System.nanoTime();
        if (phase == Phase.DOWNLOADING && now - lastDraw < 100_000_000L) {
            return; // at most 10 redraws a second while bytes flow
        }
        lastDraw = now;
        long sum = 0;
        long all = 0;
        for (long[] s : layers.values()) {
            sum += s[0];
            all += s[1];
        }
        int width = 30;
        int filled = all == 0 ? 0 : (int) (width * Math.min(1.0, (double) sum / all));
        String what = digest == null ? phase.name().toLowerCase() : phase.name().toLowerCase() + " " + digest.substring(7, 19);
        System.err.printf("\r%s [%s%s] %6.1f/%.1f MB  %-28s", shorten(image), "#".repeat(filled), " ".repeat(width - filled),
                sum / 1e6, all / 1e6, what);
        if (digest == null && phase == Phase.DONE) {
            System.err.println();
        }
    }

    private static String shorten(String image) {
        return image.length() > 40 ? "..." + image.substring(image.length() - 37) : image;
    }
}
