package io.microsandbox.runtime.network;

import static org.assertj.core.api.Assertions.assertThat;

import java.net.InetAddress;
import org.junit.jupiter.api.Test;

class LookedUpNamesTest {
    private static InetAddress address(int i) throws Exception {
        return InetAddress.getByAddress(new byte[] {10, (byte) (i >> 16), (byte) (i >> 8), (byte) i});
    }

    /**
     * A guest looking up many names, each answered with many addresses (a resolver of its
     * choosing can do that), keeps at most MAX_NAMES of them, dropping the least recently used
     * addresses first.
     */
    @Test
    void theNamesKeptAreBoundedAltogether() throws Exception {
        LookedUpNames names = new LookedUpNames();
        for (int n = 0; n < LookedUpNames.MAX_NAMES_PER_ADDRESS + 10; n++) {
            for (int a = 1; a <= LookedUpNames.MAX_ADDRESSES / 2; a++) {
                names.add(address(a), "n" + n + ".wildcard.example");
            }
        }
        assertThat(names.size()).isLessThanOrEqualTo(LookedUpNames.MAX_NAMES);
        InetAddress fresh = address(99_999);
        names.add(fresh, "api.example");
        assertThat(names.of(fresh)).containsExactly("api.example");
        assertThat(names.size()).isLessThanOrEqualTo(LookedUpNames.MAX_NAMES);
        InetAddress one = address(7);
        for (int n = 0; n < 2 * LookedUpNames.MAX_NAMES_PER_ADDRESS; n++) {
            names.add(one, "w" + n + ".example");
        }
        assertThat(names.of(one)).hasSize(LookedUpNames.MAX_NAMES_PER_ADDRESS);
        for (int a = 0; a < 2 * LookedUpNames.MAX_ADDRESSES; a++) {
            names.add(address(100_000 + a), "one.example");
        }
        assertThat(names.addresses()).hasSizeLessThanOrEqualTo(LookedUpNames.MAX_ADDRESSES);
    }
}
