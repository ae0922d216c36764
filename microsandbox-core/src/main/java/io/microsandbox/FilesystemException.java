package io.microsandbox;

/**
 * A filesystem operation in the guest failed. {@link #kind()} is
 * {@link ErrorKind#PATH_NOT_FOUND} when the path (or a directory on the way) does not exist,
 * otherwise {@link ErrorKind#FILESYSTEM}; {@link #errno()} is the guest's errno and
 * {@link #reason()} its class: {@code permission_denied}, {@code read_only},
 * {@code is_directory}, {@code not_directory}, {@code exists}, {@code not_empty},
 * {@code no_space}, {@code not_found}, {@code other}. The message names the path.
 */
public class FilesystemException extends MicrosandboxException {
    private static final long serialVersionUID = 1L;

    /** Linux errno values the SDK tests for. */
    public static final int ENOENT = 2;
    public static final int EACCES = 13;
    public static final int EEXIST = 17;
    public static final int ENOTDIR = 20;
    public static final int EISDIR = 21;
    public static final int EROFS = 30;

    private final int errno;
    private final String reason;
    private final String path;

    public FilesystemException(ErrorKind kind, String reason, int errno, String path, String message) {
        super(kind, message);
        this.errno = errno;
        this.reason = reason;
        this.path = path;
    }

    /** The guest's errno (Linux numbers), 0 when the failure did not come from a system call. */
    public int errno() {
        return errno;
    }

    /** The class of the failure, e.g. {@code permission_denied} or {@code is_directory}. */
    public String reason() {
        return reason;
    }

    /** True for {@code permission_denied} (EACCES, EPERM) and {@code read_only} (EROFS). */
    public boolean isPermissionDenied() {
        return "permission_denied".equals(reason) || "read_only".equals(reason);
    }

    /** The guest path the failure is about. */
    public String path() {
        return path;
    }
}
