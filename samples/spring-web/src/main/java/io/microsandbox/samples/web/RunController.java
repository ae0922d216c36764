package io.microsandbox.samples.web;

import io.microsandbox.ExecOutput;
import io.microsandbox.spring.SandboxAccessException;
import io.microsandbox.spring.SandboxExecutionFailedException;
import io.microsandbox.spring.SandboxOperations;
import io.microsandbox.spring.SandboxPoolExhaustedException;
import io.microsandbox.spring.SandboxTimeoutException;
import java.util.Map;
import org.springframework.http.HttpStatus;
import org.springframework.http.ResponseEntity;
import org.springframework.web.bind.annotation.ExceptionHandler;
import org.springframework.web.bind.annotation.PostMapping;
import org.springframework.web.bind.annotation.RequestBody;
import org.springframework.web.bind.annotation.RestController;

/** {@code POST /run {"language": "python", "code": "print(1)"}} runs the code in a pooled sandbox. */
@RestController
public class RunController {

    public record RunRequest(String language, String code) {
    }

    public record RunResponse(String stdout, String stderr, int exitCode, long durationMs) {
    }

    private final SandboxOperations sandboxes;

    public RunController(SandboxOperations sandboxes) {
        this.sandboxes = sandboxes;
    }

    @PostMapping("/run")
    public RunResponse run(@RequestBody RunRequest request) {
        if (request.code() == null) {
            throw new IllegalArgumentException("code is required");
        }
        long start = System.nanoTime();
        ExecOutput out = sandboxes.run(request.language() == null ? "python" : request.language(), request.code());
        return new RunResponse(out.stdout(), out.stderr(), out.exitCode(), (System.nanoTime() - start) / 1_000_000);
    }

    @ExceptionHandler(SandboxAccessException.class)
    public ResponseEntity<Map<String, String>> failed(SandboxAccessException e) {
        HttpStatus status = e instanceof SandboxTimeoutException ? HttpStatus.REQUEST_TIMEOUT
                : e instanceof SandboxPoolExhaustedException ? HttpStatus.SERVICE_UNAVAILABLE
                : e instanceof SandboxExecutionFailedException ? HttpStatus.UNPROCESSABLE_ENTITY
                : e.getKind() == io.microsandbox.ErrorKind.INVALID_ARGUMENT ? HttpStatus.BAD_REQUEST
                : HttpStatus.INTERNAL_SERVER_ERROR;
        return ResponseEntity.status(status).body(Map.of("error", String.valueOf(e.getMessage()), "kind", e.getKind().wireName()));
    }

    @ExceptionHandler(IllegalArgumentException.class)
    public ResponseEntity<Map<String, String>> badRequest(IllegalArgumentException e) {
        return ResponseEntity.badRequest().body(Map.of("error", String.valueOf(e.getMessage())));
    }
}
