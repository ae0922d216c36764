package io.microsandbox.runtime;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.UUID;

/**
 * The lock a supervisor holds on a checkpoint directory while it writes into it. The client
 * that claimed the directory holds its writing lock until the manifest is in, but the
 * supervisor writes the guest's files: a client that dies meanwhile (a redeployed application)
 * frees the writing lock, and a later claim of the name would delete the directory and make a
 * new one under the same path, which the supervisor would then write into. So the supervisor
 * holds {@value #SAVING_LOCK} too, and whoever deletes an unfinished directory takes that lock
 * first; and the client leaves a token ({@value #WRITER_TOKEN}) that the supervisor checks
 * under its lock, so it never writes into a directory claimed after the one it was sent.
 * Restores hold the same lock shared while they read a finished checkpoint's files, so a
 * remove (exclusive) is refused while they run.
 */
public final class CheckpointSaving {
    /** Held by the supervisor writing a checkpoint's files and by whoever deletes the directory; shared by restores. */
    public static final String SAVING_LOCK = ".saving.lock";
    /** The claimant's token in the directory, sent with the request. */
    public static final String WRITER_TOKEN = ".writer";
    private static final int TOKEN_BYTES = 36;

    private CheckpointSaving() {
    }

    /** Leaves a new token in {@code dir}, which its claimant holds the writing lock of, and returns it. */
    public static String leaveToken(Path dir) throws IOException {
        String token = UUID.randomUUID().toString();
        OwnerOnly.write(dir.resolve(WRITER_TOKEN), token.getBytes(StandardCharsets.US_ASCII));
        return token;
    }

    /**
     * The saving lock of {@code dir}, for the supervisor to hold while it writes there: taken,
     * then the directory's token compared with {@code token} (null: a client that sends none,
     * of an earlier version).
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_ALREADY_EXISTS} when another holds
     *         the lock (a deleter, another supervisor) or the directory is not the one the token
     *         names (deleted and claimed again), {@link ErrorKind#IO} when it cannot be locked
     */
    public static SandboxLock lockForSaving(Path dir, String token) {
        SandboxLock lock;
        try {
            lock = SandboxLock.tryAcquire(dir.resolve(SAVING_LOCK));
        } catch (NoSuchFileException e) {
            throw gone(dir, "is gone");
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot lock checkpoint directory " + dir + ": " + e.getMessage(), e);
        }
        if (lock == null) {
            throw gone(dir, "is being written or deleted by another process");
        }
        if (token != null && !token.equals(readToken(dir))) {
            lock.close();
            throw gone(dir, "was claimed again since this checkpoint was asked for (its writer died)");
        }
        return lock;
    }

    private static String readToken(Path dir) {
        try (InputStream in = Files.newInputStream(dir.resolve(WRITER_TOKEN), StandardOpenOption.READ, LinkOption.NOFOLLOW_LINKS)) {
            return new String(in.readNBytes(TOKEN_BYTES + 1), StandardCharsets.US_ASCII);
        } catch (IOException e) {
            return null;
        }
    }

    private static MicrosandboxException gone(Path dir, String why) {
        return new MicrosandboxException(ErrorKind.SNAPSHOT_ALREADY_EXISTS, "checkpoint directory " + dir + " " + why);
    }
}
