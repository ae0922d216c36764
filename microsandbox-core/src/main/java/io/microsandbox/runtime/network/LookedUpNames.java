package io.microsandbox.runtime.network;

import java.net.InetAddress;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The names the guest looked up, by the address they resolved to: what domain rules match a
 * connection by. The guest chooses the names and a resolver of its choosing the addresses (an
 * answer may carry hundreds), so the whole is bounded: addresses, names per address and names
 * altogether, the least recently used address going first.
 */
final class LookedUpNames {
    static final int MAX_ADDRESSES = 4096;
    static final int MAX_NAMES_PER_ADDRESS = 64;
    /** Names kept altogether: a few MiB at most (a name is at most 253 characters). */
    static final int MAX_NAMES = 16_384;

    private final Map<InetAddress, Set<String>> byAddress = new LinkedHashMap<>(256, 0.75f, true);
    private int names;

    /** Records that {@code name} resolved to {@code address}. */
    synchronized void add(InetAddress address, String name) {
        Set<String> set = byAddress.computeIfAbsent(address, k -> new LinkedHashSet<>());
        // bounded: a wildcard domain could otherwise pin any number of names on one address
        if (set.size() < MAX_NAMES_PER_ADDRESS && set.add(name)) {
            names++;
        }
        var eldest = byAddress.entrySet().iterator();
        while ((byAddress.size() > MAX_ADDRESSES || names > MAX_NAMES) && eldest.hasNext()) {
            Map.Entry<InetAddress, Set<String>> e = eldest.next();
            if (e.getKey().equals(address)) {
                continue; // the one just recorded stays
            }
            names -= e.getValue().size();
            eldest.remove();
        }
    }

    /** The names that resolved to {@code address}, in the order they were looked up. */
    synchronized Collection<String> of(InetAddress address) {
        Set<String> set = byAddress.get(address);
        return set == null ? List.of() : List.copyOf(set);
    }

    synchronized int size() {
        return names;
    }

    synchronized List<InetAddress> addresses() {
        return new ArrayList<>(byAddress.keySet());
    }
}
