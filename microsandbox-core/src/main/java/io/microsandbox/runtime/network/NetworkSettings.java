package io.microsandbox.runtime.network;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.NetworkPolicy;
import io.microsandbox.NetworkRule;
import io.microsandbox.PortBinding;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.OwnerOnly;
import java.io.IOException;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * What the supervisor enforces for one sandbox: its policy and published ports, written by
 * the creator next to {@code supervisor.json} as {@code network.json}.
 */
public record NetworkSettings(NetworkPolicy policy, List<PortBinding> ports) {

    public NetworkSettings {
        ports = List.copyOf(ports);
    }

    /** Whether the guest gets a network at all (the agent then sets up its side). */
    public boolean enabled() {
        return !policy.isNone() || !ports.isEmpty();
    }

    public static Path file(Path sandboxDir) {
        return sandboxDir.resolve("network.json");
    }

    public void write(Path sandboxDir) throws IOException {
        ObjectNode n = Json.object();
        n.set("policy", policy.toJsonNode());
        n.set("ports", portsToJson(ports));
        OwnerOnly.write(file(sandboxDir), Json.pretty(n));
    }

    /** The settings of a sandbox directory; without a file, the default policy and no ports. */
    public static NetworkSettings read(Path sandboxDir) throws IOException {
        Path f = file(sandboxDir);
        if (!Files.exists(f)) {
            return new NetworkSettings(NetworkPolicy.publicOnly(), List.of());
        }
        JsonNode n = Json.parse(f);
        return new NetworkSettings(NetworkPolicy.fromJsonNode(n.path("policy")), portsFromJson(n.path("ports")));
    }

    /** Published ports as JSON, the form {@link #portsFromJson} reads. */
    public static ArrayNode portsToJson(List<PortBinding> ports) {
        ArrayNode arr = Json.array();
        for (PortBinding p : ports) {
            arr.addObject().put("bind", p.bindAddress()).put("host", p.hostPort()).put("guest", p.guestPort())
                    .put("protocol", p.protocol().name().toLowerCase(java.util.Locale.ROOT));
        }
        return arr;
    }

    public static List<PortBinding> portsFromJson(JsonNode arr) {
        List<PortBinding> ports = new ArrayList<>();
        for (JsonNode p : arr) {
            ports.add(new PortBinding(p.path("bind").asText("127.0.0.1"), p.path("host").asInt(), p.path("guest").asInt(),
                    NetworkRule.Protocol.valueOf(p.path("protocol").asText("tcp").toUpperCase(java.util.Locale.ROOT))));
        }
        return ports;
    }

    /** Binds a published TCP port's host socket; {@link ErrorKind#INVALID_CONFIG} when the port is taken. */
    public static ServerSocket bind(PortBinding p) {
        try {
            ServerSocket s = new ServerSocket();
            try {
                s.setReuseAddress(true);
                s.bind(new InetSocketAddress(InetAddress.getByName(p.bindAddress()), p.hostPort()), 128);
                return s;
            } catch (IOException e) {
                s.close();
                throw e;
            }
        } catch (IOException e) {
            throw taken(p, e);
        }
    }

    /** Binds a published UDP port's host socket; {@link ErrorKind#INVALID_CONFIG} when the port is taken. */
    public static DatagramSocket bindUdp(PortBinding p) {
        try {
            return new DatagramSocket(new InetSocketAddress(InetAddress.getByName(p.bindAddress()), p.hostPort()));
        } catch (IOException e) {
            throw taken(p, e);
        }
    }

    private static MicrosandboxException taken(PortBinding p, IOException e) {
        return new MicrosandboxException(ErrorKind.INVALID_CONFIG, "cannot publish " + p.protocol().name().toLowerCase(java.util.Locale.ROOT)
                + " " + p.bindAddress() + ":" + p.hostPort() + " (guest port " + p.guestPort() + "): " + e.getMessage(), e);
    }

    /** Fails with {@link ErrorKind#INVALID_CONFIG} when a published host port is in use now (checked by the creator before boot). */
    public void checkPortsFree() {
        for (PortBinding p : ports) {
            if (p.protocol() == NetworkRule.Protocol.UDP) {
                bindUdp(p).close();
                continue;
            }
            try {
                bind(p).close();
            } catch (IOException e) {
                throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "cannot check port " + p.hostPort() + ": " + e.getMessage(), e);
            }
        }
    }
}
