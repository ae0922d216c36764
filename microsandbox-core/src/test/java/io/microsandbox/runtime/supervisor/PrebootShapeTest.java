package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;

import java.util.List;
import org.junit.jupiter.api.Test;

class PrebootShapeTest {
    @Test
    void relocatesTheSandboxsOwnPathsAndTravelsAsJson() throws Exception {
        List<String> argv = List.of("qemu", "-chardev", "socket,id=agent,path=/h/run/abc/vm.sock",
                "-drive", "id=upper,file=/h/sandboxes/one/upper.ext4,format=raw", "-drive", "id=lower,file=/h/cache/rootfs/l.ext4",
                "-qmp", "unix:/h/run/abc/qmp.sock,server=on,wait=off");
        PrebootShape shape = new PrebootShape(argv, "/h/run/abc", "/h/sandboxes/one/upper.ext4", 4096);
        List<String> spare = PrebootShape.relocate(argv, shape.runDir(), shape.upperDisk(), "/h/run/spare-7", "/h/run/spare-7/upper.ext4");
        assertThat(spare).containsExactly("qemu", "-chardev", "socket,id=agent,path=/h/run/spare-7/vm.sock",
                "-drive", "id=upper,file=/h/run/spare-7/upper.ext4,format=raw", "-drive", "id=lower,file=/h/cache/rootfs/l.ext4",
                "-qmp", "unix:/h/run/spare-7/qmp.sock,server=on,wait=off");
        // another sandbox's command line, relocated the same way, is the spare's when only its own paths differ
        List<String> other = argv.stream().map(a -> a.replace("/h/run/abc", "/h/run/def").replace("/sandboxes/one/", "/sandboxes/two/")).toList();
        assertThat(PrebootShape.relocate(other, "/h/run/def", "/h/sandboxes/two/upper.ext4", "/h/run/spare-7", "/h/run/spare-7/upper.ext4"))
                .isEqualTo(spare);
        assertThat(PrebootShape.fromJson(shape.toJson())).isEqualTo(shape);
        PrebootShape restore = new PrebootShape(argv, "/h/run/abc", "/h/sandboxes/one/upper.ext4", 0,
                new PrebootShape.Restore("/h/checkpoints/c/ram.bin", "file:/h/checkpoints/c/memory.bin", "/h/checkpoints/c/upper.ext4", null));
        assertThat(PrebootShape.fromJson(restore.toJson())).isEqualTo(restore);
        // the JSON is what databind's mapper writes for the records
        ObjectMapper mapper = new ObjectMapper();
        assertThat(shape.toJson()).isEqualTo(mapper.writeValueAsString(shape));
        assertThat(restore.toJson()).isEqualTo(mapper.writeValueAsString(restore));
    }

    /** A sandbox name with a comma stands doubled in QEMU's option values: relocated all the same, never left naming that sandbox's disk. */
    @Test
    void pathsWithCommasAreRelocatedAsQemuWritesThem() {
        List<String> argv = List.of("qemu", "-chardev", "socket,id=agent,path=/h,1/run/abc/vm.sock",
                "-drive", "id=upper,file=/h,,1/sandboxes/a,,b/upper.ext4,format=raw", "-pidfile", "/h,1/sandboxes/a,b/upper.ext4");
        List<String> spare = PrebootShape.relocate(argv, "/h,1/run/abc", "/h,1/sandboxes/a,b/upper.ext4", "/h,1/run/spare", "/h,1/run/spare/upper.ext4");
        assertThat(spare).containsExactly("qemu", "-chardev", "socket,id=agent,path=/h,1/run/spare/vm.sock",
                "-drive", "id=upper,file=/h,,1/run/spare/upper.ext4,format=raw", "-pidfile", "/h,1/run/spare/upper.ext4");
        assertThat(spare).noneMatch(a -> PrebootShape.mentions(a, "/h,1/sandboxes/a,b/upper.ext4"));
        assertThat(PrebootShape.mentions(argv.get(4), "/h,1/sandboxes/a,b/upper.ext4")).isTrue();
    }

    @Test
    void aShapeOfTheWrongFormIsRefusedNamingTheField() {
        assertThatThrownBy(() -> PrebootShape.fromJson("{\"vmmArgv\":[1]}")).isInstanceOf(IOException.class).hasMessageContaining("\"vmmArgv\"");
        assertThatThrownBy(() -> PrebootShape.fromJson("{\"upperSizeMib\":-1}")).isInstanceOf(IOException.class).hasMessageContaining("\"upperSizeMib\"");
        assertThatThrownBy(() -> PrebootShape.fromJson("{\"restore\":{\"ramFile\":7}}")).isInstanceOf(IOException.class).hasMessageContaining("\"ramFile\"");
        assertThatThrownBy(() -> PrebootShape.fromJson("{\"restore\":[]}")).isInstanceOf(IOException.class).hasMessageContaining("\"restore\"");
        assertThatThrownBy(() -> PrebootShape.fromJson("null")).isInstanceOf(IOException.class).hasMessageContaining("JSON object");
    }
}
