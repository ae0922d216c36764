package io.microsandbox;

import java.util.Objects;

/**
 * Options of one {@link Mount}: read-only, noexec, nosuid, nodev, and a size limit where the
 * backing has one (tmpfs). Immutable; start from {@link #defaults()} or {@link #builder()}.
 *
 * <pre>{@code
 * MountOptions ro = MountOptions.builder().readonly().nodev().build();
 * }</pre>
 */
public final class MountOptions {
    private static final MountOptions DEFAULTS = new Builder().build();

    private final boolean readonly;
    private final boolean noexec;
    private final boolean nosuid;
    private final boolean nodev;
    private final Integer sizeMib;

    private MountOptions(Builder b) {
        this.readonly = b.readonly;
        this.noexec = b.noexec;
        this.nosuid = b.nosuid;
        this.nodev = b.nodev;
        this.sizeMib = b.sizeMib;
    }

    /** Writable, exec, suid and devices allowed, no size limit beyond the backing's own. */
    public static MountOptions defaults() {
        return DEFAULTS;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Whether the guest may only read the mount. */
    public boolean readonly() {
        return readonly;
    }

    /** Whether programs on the mount may not be executed. */
    public boolean noexec() {
        return noexec;
    }

    /** Whether set-user-id and set-group-id bits are ignored on the mount. */
    public boolean nosuid() {
        return nosuid;
    }

    /** Whether device nodes on the mount cannot be opened. */
    public boolean nodev() {
        return nodev;
    }

    /** Size limit in MiB (tmpfs only), or null for the backing's default. */
    public Integer sizeMib() {
        return sizeMib;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof MountOptions m && readonly == m.readonly && noexec == m.noexec && nosuid == m.nosuid
                && nodev == m.nodev && Objects.equals(sizeMib, m.sizeMib);
    }

    @Override
    public int hashCode() {
        return Objects.hash(readonly, noexec, nosuid, nodev, sizeMib);
    }

    @Override
    public String toString() {
        return "MountOptions[readonly=" + readonly + ", noexec=" + noexec + ", nosuid=" + nosuid + ", nodev=" + nodev
                + ", sizeMib=" + sizeMib + "]";
    }

    /** Builder of {@link MountOptions}; every flag starts off. */
    public static final class Builder {
        private boolean readonly;
        private boolean noexec;
        private boolean nosuid;
        private boolean nodev;
        private Integer sizeMib;

        private Builder() {
        }

        /** Mount read-only (also enforced by QEMU for shares and disks). */
        public Builder readonly() {
            return readonly(true);
        }

        /** Sets or clears readonly. */
        public Builder readonly(boolean readonly) {
            this.readonly = readonly;
            return this;
        }

        /** Programs on the mount may not be executed. */
        public Builder noexec() {
            return noexec(true);
        }

        /** Sets or clears noexec. */
        public Builder noexec(boolean noexec) {
            this.noexec = noexec;
            return this;
        }

        /** Set-user-id and set-group-id bits are ignored on the mount. */
        public Builder nosuid() {
            return nosuid(true);
        }

        /** Sets or clears nosuid. */
        public Builder nosuid(boolean nosuid) {
            this.nosuid = nosuid;
            return this;
        }

        /** Device nodes on the mount cannot be opened. */
        public Builder nodev() {
            return nodev(true);
        }

        /** Sets or clears nodev. */
        public Builder nodev(boolean nodev) {
            this.nodev = nodev;
            return this;
        }

        /** Size limit in MiB (tmpfs only; a disk's size is fixed when it is created); null for none. */
        public Builder sizeMib(Integer sizeMib) {
            this.sizeMib = sizeMib;
            return this;
        }

        /** The options. */
        public MountOptions build() {
            return new MountOptions(this);
        }
    }
}
