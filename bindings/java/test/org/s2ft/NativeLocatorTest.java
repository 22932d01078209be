package org.s2ft;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Properties;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/** The jar-relative lookup of the installed JNI library (S2ft.loadNative's second choice). */
public class NativeLocatorTest {
  @Rule public TemporaryFolder tmp = new TemporaryFolder();

  private static final String LIB = "libs2ft_jni.so";

  private static Properties layout() {
    Properties p = new Properties();
    p.setProperty("jar.dirs", "share/java,share/maven-repo/org/s2ft/s2ft/1.2.3");
    p.setProperty("lib.dir", "lib64");
    return p;
  }

  /** A prefix holding <lib.dir>/libs2ft_jni.so and both jar folders. */
  private Path prefix() throws Exception {
    Path prefix = tmp.getRoot().toPath().resolve("prefix");
    Files.createDirectories(prefix.resolve("share/java"));
    Files.createDirectories(prefix.resolve("share/maven-repo/org/s2ft/s2ft/1.2.3"));
    Files.createDirectories(prefix.resolve("lib64"));
    Files.createFile(prefix.resolve("lib64").resolve(LIB));
    return prefix;
  }

  @Test
  public void findsTheLibraryOfThePrefixFromEitherJarFolder() throws Exception {
    Path prefix = prefix();
    Path lib = prefix.resolve("lib64").resolve(LIB);
    assertEquals(lib, NativeLocator.locate(prefix.resolve("share/java"), layout(), LIB));
    assertEquals(lib, NativeLocator.locate(prefix.resolve("share/maven-repo/org/s2ft/s2ft/1.2.3"), layout(), LIB));
  }

  @Test
  public void aJarOutsideTheInstallLayoutFindsNothing() throws Exception {
    Path prefix = prefix();
    // A build tree or a Maven cache: the folder does not end with an installed jar folder.
    assertNull(NativeLocator.locate(prefix.resolve("share"), layout(), LIB));
    assertNull(NativeLocator.locate(prefix.resolve("share/maven-repo/org/s2ft/s2ft/9.9.9"), layout(), LIB));
  }

  @Test
  public void anInstallWithoutTheLibraryFindsNothing() throws Exception {
    Path prefix = prefix();
    Files.delete(prefix.resolve("lib64").resolve(LIB));
    assertNull(NativeLocator.locate(prefix.resolve("share/java"), layout(), LIB));
  }

  @Test
  public void theJarCarriesTheInstallLayoutOfItsBuild() throws Exception {
    Properties p = new Properties();
    try (InputStream in = NativeLocator.class.getResourceAsStream(NativeLocator.LAYOUT)) {
      assertNotNull("s2ft.jar lacks " + NativeLocator.LAYOUT, in);
      p.load(in);
    }
    assertFalse(p.getProperty("jar.dirs", "").isEmpty());
    assertFalse(p.getProperty("lib.dir", "").isEmpty());
  }
}
