package org.s2ft;

import java.io.IOException;
import java.io.InputStream;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.CodeSource;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

/**
 * Finds the JNI library that {@code cmake --install} put in the same prefix as the jar this
 * class was loaded from, so an installed s2ft.jar works without {@code -D} flags.
 *
 * <p>The build writes the install layout into the jar ({@value #LAYOUT}: the folders the jar is
 * installed in and the library folder, relative to the prefix). When the jar's folder ends with
 * one of those folders, the prefix is what precedes it and the library is looked for in
 * {@code <prefix>/<lib.dir>}. A jar anywhere else (a build tree, a Maven cache) matches nothing.
 */
final class NativeLocator {
  private NativeLocator() {}

  /** The install layout resource, next to this class in the jar. */
  static final String LAYOUT = "install-layout.properties";

  /** The installed JNI library next to this jar's prefix, or null when there is none. */
  static Path installedLibrary() {
    Properties layout = new Properties();
    try (InputStream in = NativeLocator.class.getResourceAsStream(LAYOUT)) {
      if (in == null) return null;
      layout.load(in);
    } catch (IOException e) {
      return null;
    }
    for (Path dir : jarDirectories()) {
      Path found = locate(dir, layout, System.mapLibraryName("s2ft_jni"));
      if (found != null) return found;
    }
    return null;
  }

  /**
   * The library file {@code fileName} under the prefix that {@code jarDir} belongs to according
   * to {@code layout}, if it exists; null otherwise.
   */
  static Path locate(Path jarDir, Properties layout, String fileName) {
    String libDir = layout.getProperty("lib.dir", "");
    String jarDirs = layout.getProperty("jar.dirs", "");
    if (libDir.isEmpty()) return null;
    for (String entry : jarDirs.split(",")) {
      if (entry.isEmpty()) continue;
      Path installed = Paths.get(entry);
      if (installed.isAbsolute() || !jarDir.endsWith(installed)) continue;
      Path prefix = jarDir;
      for (int i = 0; i < installed.getNameCount() && prefix != null; ++i) prefix = prefix.getParent();
      if (prefix == null) continue;
      Path candidate = prefix.resolve(libDir).resolve(fileName).normalize();
      if (Files.isRegularFile(candidate)) return candidate;
    }
    return null;
  }

  /** The folder of the jar holding this class, as named and with links resolved. */
  private static List<Path> jarDirectories() {
    List<Path> dirs = new ArrayList<>();
    try {
      CodeSource source = NativeLocator.class.getProtectionDomain().getCodeSource();
      URL location = source == null ? null : source.getLocation();
      if (location == null || !"file".equals(location.getProtocol())) return dirs;
      Path jar = Paths.get(location.toURI()).toAbsolutePath();
      if (!Files.isRegularFile(jar)) return dirs;  // classes in a folder: not an installed jar
      dirs.add(jar.getParent());
      // A jar linked into an application's folder still finds its own prefix.
      Path real = jar.toRealPath().getParent();
      if (!real.equals(jar.getParent())) dirs.add(real);
    } catch (Exception e) {
      // No usable location (a security manager, an unusual class loader): nothing to find.
    }
    return dirs;
  }
}
