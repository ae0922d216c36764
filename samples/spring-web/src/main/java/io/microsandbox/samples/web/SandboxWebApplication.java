package io.microsandbox.samples.web;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/** A web service that runs untrusted code in pooled microVM sandboxes: {@code POST /run}. */
@SpringBootApplication
public class SandboxWebApplication {

    public static void main(String[] args) {
        SpringApplication.run(SandboxWebApplication.class, args);
    }
}
