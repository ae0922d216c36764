package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;

import io.microsandbox.runtime.agent.FrameLink;
import java.io.IOException;
import java.nio.channels.SocketChannel;
import java.util.HashSet;
import java.util.Set;
import org.junit.jupiter.api.Test;

class SessionRouterTest {

    private static ClientConnection client(int slot) throws IOException {
        return new ClientConnection(slot, new FrameLink(SocketChannel.open()), null, false);
    }

    /** Finding 6: clients that number their requests alike never share a guest id, now or later. */
    @Test
    void guestIdsAreNeverReusedAcrossClients() throws IOException {
        SessionRouter router = new SessionRouter();
        Set<Integer> seen = new HashSet<>();
        for (int generation = 0; generation < 5; generation++) {
            ClientConnection client = client(1); // the same slot, as a reconnecting client gets
            for (int id = 1; id <= 3; id++) {
                SessionRouter.Route route = router.open(client, id, true, false, id, 1000);
                assertThat(seen.add(route.guestId)).as("guest id %d reused", route.guestId).isTrue();
                assertThat(router.ofGuest(route.guestId).client).isSameAs(client);
            }
            for (SessionRouter.Route cancelled : router.cancelAll(client)) {
                router.close(cancelled); // the guest reports the end
            }
        }
        assertThat(router.sessions()).isZero();
    }

    @Test
    void aClientCannotOpenTheSameIdTwice() throws IOException {
        SessionRouter router = new SessionRouter();
        ClientConnection client = client(1);
        assertThat(router.open(client, 7, true, false, 1, 1000)).isNotNull();
        assertThat(router.open(client, 7, true, false, 2, 1000)).isNull();
        assertThat(router.open(client(2), 7, true, false, 3, 1000)).as("another client's 7 is its own").isNotNull();
    }

    /** A detached session is no longer its client's: the client's leaving keeps it, and its end touches none of the client's routes. */
    @Test
    void aDetachedSessionOutlivesItsClientAndItsIdIsTheClientsAgain() throws IOException {
        SessionRouter router = new SessionRouter();
        ClientConnection client = client(1);
        SessionRouter.Route detached = router.open(client, 7, true, false, 1, 1000);
        router.detach(detached);
        SessionRouter.Route reused = router.open(client, 7, true, false, 2, 1000);
        assertThat(reused).as("the id is free again").isNotNull();
        assertThat(router.close(detached)).isTrue();
        assertThat(router.ofClient(client, 7)).as("the detached session's end leaves the new one").isSameAs(reused);
        assertThat(router.cancelAll(client)).containsExactly(reused);
        assertThat(router.close(reused)).isTrue();
        assertThat(router.sessions()).isZero();
    }

    /**
     * A session its client gave up stays open, counted and routed by its guest id, until the guest
     * reports its end (a checkpoint must not start meanwhile), while its id is the client's again;
     * a client's leaving closes its one-shot requests at once.
     */
    @Test
    void aCancelledSessionStaysOpenUntilItsEnd() throws IOException {
        SessionRouter router = new SessionRouter();
        ClientConnection client = client(1);
        SessionRouter.Route session = router.open(client, 7, true, false, 1, 1000);
        router.cancel(session);
        assertThat(session.cancelled).isTrue();
        assertThat(router.ofGuest(session.guestId)).isSameAs(session);
        assertThat(router.sessions()).isEqualTo(1);
        SessionRouter.Route reused = router.open(client, 7, true, false, 2, 1000);
        assertThat(reused).as("the id is free again").isNotNull();
        SessionRouter.Route request = router.open(client, 8, false, false, 0, 0);
        assertThat(router.cancelAll(client)).containsExactly(reused);
        assertThat(router.ofGuest(request.guestId)).as("a one-shot request closes with its client").isNull();
        assertThat(router.routes()).isEqualTo(2);
        assertThat(router.close(session)).isTrue();
        assertThat(router.close(reused)).isTrue();
        assertThat(router.sessions()).isZero();
        assertThat(router.routes()).isZero();
    }

    /** A guest that never answers one-shot requests cannot use up a client's routes; sessions are kept. */
    @Test
    void unansweredRequestsAreGivenUpOldestFirstButSessionsAreKept() throws IOException {
        SessionRouter router = new SessionRouter();
        ClientConnection client = client(1);
        SessionRouter.Route session = router.open(client, 1, true, false, 1, 1000);
        for (int id = 2; id <= SessionRouter.MAX_ROUTES_PER_CLIENT + 50; id++) {
            assertThat(router.open(client, id, false, false, 0, 0)).as("request %d", id).isNotNull();
        }
        assertThat(router.ofGuest(session.guestId)).isSameAs(session);
        assertThat(router.ofClient(client, 2)).as("the oldest request was given up").isNull();
    }

    @Test
    void outputBeyondTheWindowIsRefused() throws IOException {
        SessionRouter router = new SessionRouter();
        SessionRouter.Route route = router.open(client(1), 1, true, false, 1, 100);
        assertThat(router.consumeWindow(route, 60)).isTrue();
        assertThat(router.consumeWindow(route, 41)).isFalse();
        router.growWindow(route, 1);
        assertThat(router.consumeWindow(route, 41)).isTrue();
        router.growWindow(route, Long.MAX_VALUE);
        assertThat(route.window).isEqualTo(1L << 30);
    }
}
