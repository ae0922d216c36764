package io.microsandbox.runtime;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.UUID;

/**
 * A directory that one process at a time owns by a lock file inside it (a sandbox's
 * {@code create.lock}, a snapshot's writing lock), made and deleted so that nobody ever sees it
 * in between: it appears under its name with its lock already held, and it leaves its name in
 * one step before it is deleted. Without that, a second process could find a directory with
 * its lock file but not yet its lock, take it for abandoned and delete it under its owner.
 */
public final class ClaimedDirectory {
    /** How old a hidden claim or deletion beside a directory must be to count as left by a dead process. */
    public static final Duration LEFTOVER_AGE = Duration.ofMinutes(10);

    private ClaimedDirectory() {
    }

    /**
     * Creates {@code dir} holding the lock on {@code lockName} inside it: the directory is made
     * under a hidden name beside it ({@code .claiming-}), its lock taken there, and only then
     * renamed into place. Leftovers of dead claims and deletions of the same name go first.
     *
     * @throws java.nio.file.FileAlreadyExistsException when {@code dir} exists
     */
    public static SandboxLock claim(Path dir, String lockName) throws IOException {
        sweepLeftovers(dir, lockName, LEFTOVER_AGE);
        Path staging = dir.resolveSibling(".claiming-" + dir.getFileName() + "-" + UUID.randomUUID());
        Files.createDirectory(staging);
        SandboxLock lock = null;
        try {
            OwnerOnly.restrict(staging, OwnerOnly.DIRECTORY);
            lock = SandboxLock.tryAcquire(staging.resolve(lockName));
            if (lock == null) {
                throw new IOException(staging + " is locked by someone else");
            }
            Posix.renameNoReplace(staging, dir);
            return lock;
        } catch (IOException | RuntimeException e) {
            if (lock != null) {
                lock.close();
            }
            SandboxPreparer.deleteTree(staging);
            throw e;
        }
    }

    /**
     * Deletes {@code dir} after renaming it out of the way ({@code .removing-}) in one step, so
     * that nobody finds it half deleted and concurrent deleters do not trip over each other.
     *
     * @return false when it was gone already (another deleter got there first)
     */
    public static boolean delete(Path dir) {
        Path doomed = moveAside(dir);
        if (doomed == null) {
            return false;
        }
        for (int attempt = 1; ; attempt++) {
            try {
                SandboxPreparer.deleteTree(doomed);
                return true;
            } catch (MicrosandboxException e) {
                // a lookup of the old name begun before the rename may still create an entry in it
                // (another deleter's lock file, O_CREAT); none can begin since, so this ends
                if (!(e.getCause() instanceof java.nio.file.DirectoryNotEmptyException) || attempt == DELETE_ATTEMPTS) {
                    throw e;
                }
                try {
                    Thread.sleep(Math.min(1L << attempt, 100)); // lets a creator stalled in its lookup finish first
                } catch (InterruptedException interrupted) {
                    Thread.currentThread().interrupt();
                    throw e;
                }
            }
        }
    }

    /** Walks of a directory being deleted, should late creations leave it not empty. */
    private static final int DELETE_ATTEMPTS = 10;

    /**
     * Renames {@code dir} out of the way in one step, under the hidden name of a deletion
     * ({@code .removing-}, swept if its deleter dies), for the caller to delete or put back.
     *
     * @return where it went; null when it was not there
     */
    public static Path moveAside(Path dir) {
        Path aside = dir.resolveSibling(".removing-" + dir.getFileName() + "-" + UUID.randomUUID());
        try {
            Files.move(dir, aside, StandardCopyOption.ATOMIC_MOVE);
            return aside;
        } catch (NoSuchFileException e) {
            return null;
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot remove " + dir + ": " + e.getMessage(), e);
        }
    }

    private static final java.util.regex.Pattern UUID_TEXT =
            java.util.regex.Pattern.compile("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");

    /** Whether {@code entry} is a hidden claim or deletion of {@code name}: its prefix, the name, a dash and a UUID. */
    static boolean isLeftoverOf(String entry, String name) {
        return name.equals(leftoverName(entry));
    }

    /** The name {@code entry} is a hidden claim or deletion of; null when it is none. */
    private static String leftoverName(String entry) {
        int uuid = entry.length() - 36; // prefixes ".claiming-" and ".removing-" are equally long
        if ((!entry.startsWith(".claiming-") && !entry.startsWith(".removing-")) || uuid <= ".claiming-".length()
                || entry.charAt(uuid - 1) != '-' || !UUID_TEXT.matcher(entry.substring(uuid)).matches()) {
            return null;
        }
        return entry.substring(".claiming-".length(), uuid - 1);
    }

    /**
     * Deletes, best effort, what processes that died left beside {@code dir} under hidden names:
     * a claim never renamed into place, a deletion never finished (which may hold a whole disk or
     * memory file). Only those renamed or made more than {@code age} ago (their inode change
     * time) and whose lock nobody holds: a live claim or deletion takes milliseconds.
     *
     * @param lockName the lock file in such a leftover; null for directories that hold none
     */
    public static void sweepLeftovers(Path dir, String lockName, Duration age) {
        // compared as text, not as a glob: a name may hold [ { * ?, and "a" must not take "a-b"'s
        sweep(dir.getParent(), p -> isLeftoverOf(p.getFileName().toString(), dir.getFileName().toString()), lockName, age);
    }

    /**
     * {@link #sweepLeftovers} for every name in {@code parent}: for directories whose leftovers
     * would otherwise wait for a claim of the same name, which may never come (a snapshot taken
     * once under a name of the moment).
     */
    public static void sweepAllLeftovers(Path parent, String lockName, Duration age) {
        sweep(parent, p -> leftoverName(p.getFileName().toString()) != null, lockName, age);
    }

    private static void sweep(Path parent, java.nio.file.DirectoryStream.Filter<Path> which, String lockName, Duration age) {
        long before = System.currentTimeMillis() - age.toMillis();
        try (java.nio.file.DirectoryStream<Path> leftovers = Files.newDirectoryStream(parent, which)) {
            for (Path leftover : leftovers) {
                Object changed = Files.getAttribute(leftover, "unix:ctime", LinkOption.NOFOLLOW_LINKS);
                if (changed instanceof java.nio.file.attribute.FileTime t && t.toMillis() < before
                        && (lockName == null || !SandboxLock.isHeld(leftover.resolve(lockName)))) {
                    SandboxPreparer.deleteTree(leftover);
                }
            }
        } catch (IOException | MicrosandboxException e) {
            // best effort: the next claim of this name tries again
        }
    }
}
