package io.microsandbox.spring.pool;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class LeaseTest {

    @Test
    void aUseAfterTheReturnIsRefused() {
        Lease lease = new Lease(null, new Object());
        assertThat(lease.beginUse()).isTrue();
        lease.endUse();
        assertThat(lease.markReturned()).isTrue();
        assertThat(lease.markReturned()).as("a second return").isFalse();
        assertThat(lease.beginUse()).isFalse();
        assertThat(lease.brokenReason()).isNull();
    }

    @Test
    void aReturnWhileAUseIsUnderWayBreaksTheLease() {
        Lease lease = new Lease(null, new Object());
        assertThat(lease.beginUse()).isTrue();
        assertThat(lease.markReturned()).isTrue();
        lease.endUse();
        assertThat(lease.brokenReason()).isEqualTo("in use after its return");
    }

    @Test
    void anEarlierBreakKeepsItsReason() {
        Lease lease = new Lease(null, new Object());
        lease.markBroken("timeout");
        assertThat(lease.beginUse()).isTrue();
        lease.markReturned();
        assertThat(lease.brokenReason()).isEqualTo("timeout");
    }
}
