package io.microsandbox.runtime.supervisor;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Which client each guest-side id belongs to. Every client numbers its own requests; the
 * router gives each one a guest id that is never used again over the supervisor's life, so
 * a new client can never receive what a process left by an earlier client still writes, and
 * frames for ids nobody owns are dropped. It also keeps each exec session's output window,
 * so a guest that sends more than the client granted is caught here.
 */
final class SessionRouter {
    /** Requests one client may have open at once. */
    static final int MAX_ROUTES_PER_CLIENT = 1024;

    /** One open request or exec session. */
    static final class Route {
        final ClientConnection client;
        final int clientId;
        final int guestId;
        /** An exec session (until its terminal frame), or a one-shot request. */
        final boolean session;
        final boolean tty;
        final long logId;
        /** A filesystem session (fs.request): its data is not logged. */
        final boolean fs;
        /** Output bytes the guest may still send for this session. */
        long window;
        boolean windowViolationLogged;
        /** Whether the guest has said the command started: once per session. */
        boolean startSeen;
        boolean unexpectedFrameLogged;
        /** Let go by its client ({@link #detach}): no longer the client's, and nothing goes to it. */
        volatile boolean detached;
        /** Given up by its client ({@link #cancel}): no longer the client's; the guest is ending it. */
        volatile boolean cancelled;

        Route(ClientConnection client, int clientId, int guestId, boolean session, boolean tty, long logId, long window, boolean fs) {
            this.fs = fs;
            this.client = client;
            this.clientId = clientId;
            this.guestId = guestId;
            this.session = session;
            this.tty = tty;
            this.logId = logId;
            this.window = window;
        }
    }

    private final Map<Integer, Route> byGuestId = new HashMap<>();
    private final Map<ClientConnection, Map<Integer, Route>> byClient = new HashMap<>();
    /** Guest ids are handed out once; 0 is the connection itself. */
    private long lastGuestId;
    private int sessions;

    /**
     * Opens a route for {@code clientId} of {@code client}.
     *
     * @return the route, or null when the client already uses that id, has too many open, or
     *         the guest id space is spent
     */
    synchronized Route open(ClientConnection client, int clientId, boolean session, boolean tty, long logId, long window) {
        return open(client, clientId, session, tty, logId, window, false);
    }

    synchronized Route open(ClientConnection client, int clientId, boolean session, boolean tty, long logId, long window, boolean fs) {
        Map<Integer, Route> own = byClient.computeIfAbsent(client, c -> new HashMap<>());
        if (own.size() >= MAX_ROUTES_PER_CLIENT) {
            // a guest that never answers requests must not use up the client's routes: the
            // oldest unanswered one-shot request is given up (its caller has timed out by then)
            own.values().stream().filter(r -> !r.session).min(java.util.Comparator.comparingLong(r -> Integer.toUnsignedLong(r.guestId)))
                    .ifPresent(this::closeLocked);
        }
        if (own.containsKey(clientId) || own.size() >= MAX_ROUTES_PER_CLIENT || lastGuestId >= 0xFFFF_FFFFL) {
            return null;
        }
        int guestId = (int) ++lastGuestId;
        Route route = new Route(client, clientId, guestId, session, tty, logId, window, fs);
        own.put(clientId, route);
        byGuestId.put(guestId, route);
        if (session) {
            sessions++;
        }
        return route;
    }

    /** The open route of a client's id, or null. */
    synchronized Route ofClient(ClientConnection client, int clientId) {
        Map<Integer, Route> own = byClient.get(client);
        return own == null ? null : own.get(clientId);
    }

    synchronized Route ofGuest(int guestId) {
        return byGuestId.get(guestId);
    }

    /** Closes a route; false if it was closed already. */
    synchronized boolean close(Route route) {
        return closeLocked(route);
    }

    private boolean closeLocked(Route route) {
        if (byGuestId.remove(route.guestId) == null) {
            return false;
        }
        Map<Integer, Route> own = byClient.get(route.client);
        if (own != null) {
            own.remove(route.clientId, route);
        }
        if (route.session) {
            sessions--;
        }
        return true;
    }

    /**
     * Takes a session from its client, which goes on without it: it stays open (by its guest id)
     * until its end, and the client's leaving does not close it.
     */
    synchronized void detach(Route route) {
        if (letGo(route)) {
            route.detached = true;
        }
    }

    /**
     * Takes a session from its client, which gave it up: it stays open (by its guest id, counted
     * as running and keeping a checkpoint off) until the guest reports its end, and nothing of it
     * reaches a client any more.
     */
    synchronized void cancel(Route route) {
        if (letGo(route)) {
            route.cancelled = true;
        }
    }

    /** Takes an open route from its client's map (its id free for the client again); false when it is closed. */
    private boolean letGo(Route route) {
        if (byGuestId.get(route.guestId) != route) {
            return false;
        }
        Map<Integer, Route> own = byClient.get(route.client);
        if (own != null) {
            own.remove(route.clientId, route);
        }
        return true;
    }

    /**
     * A client went away: closes its one-shot requests and cancels its sessions (see
     * {@link #cancel}), and returns the sessions, for the guest to be told.
     */
    synchronized List<Route> cancelAll(ClientConnection client) {
        Map<Integer, Route> own = byClient.remove(client);
        List<Route> cancelled = new ArrayList<>();
        if (own != null) {
            for (Route route : own.values()) {
                if (route.session) {
                    route.cancelled = true;
                    cancelled.add(route);
                } else {
                    byGuestId.remove(route.guestId);
                }
            }
        }
        return cancelled;
    }

    /**
     * Takes {@code bytes} of output from a session's window.
     *
     * @return false when the guest sent more than the window allows
     */
    synchronized boolean consumeWindow(Route route, long bytes) {
        if (bytes > route.window) {
            return false;
        }
        route.window -= bytes;
        return true;
    }

    synchronized long window(Route route) {
        return route.window;
    }

    synchronized void growWindow(Route route, long bytes) {
        route.window = Math.min(route.window + Math.max(0, bytes), 1L << 30);
    }

    /** Routes open now: sessions and one-shot requests the guest has not answered yet. */
    synchronized int routes() {
        return byGuestId.size();
    }

    /** Exec sessions running now. */
    synchronized int sessions() {
        return sessions;
    }
}
