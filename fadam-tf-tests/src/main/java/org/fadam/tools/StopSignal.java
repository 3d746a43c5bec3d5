package org.fadam.tools;

import java.io.PrintStream;
import java.lang.reflect.Constructor;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicReference;

/**
 * SIGINT (Ctrl-C) and SIGTERM as a request to stop at the next safe point, instead of the JVM's
 * default (exit at once, mid-write): a long-running tool polls {@link #requested()} between units
 * of work, writes what it has, and exits with {@link #exitStatus()}, 128 + the signal's number
 * (130, 143), what a shell reports for a process the signal ended. A second signal quits at once,
 * unless it comes within {@value #REPEAT_MILLIS} ms of the first: then it is taken as the same
 * one, sent twice (scripts/lib.sh passes a signal on to the JVM, which may have had it already as
 * a member of the terminal's process group).
 *
 * <p>The handlers are sun.misc.Signal's (module jdk.unsupported), reached by reflection so that
 * the build stays free of its "internal proprietary API" warning. Where the JVM cannot take the
 * signal over (it was started with the signal ignored, or with {@code -Xrs}), the default stays.
 */
public final class StopSignal {

  /** A signal this soon after the first is the first one again. */
  static final long REPEAT_MILLIS = 1000;

  /** The first signal: its name and number, and when it came. */
  private record First(String name, int number, long nanos) {}

  private final AtomicReference<First> first = new AtomicReference<>();

  private StopSignal() {}

  /** A request that only {@link #request} makes (in-process runs and tests). */
  public static StopSignal none() {
    return new StopSignal();
  }

  /**
   * Takes SIGINT and SIGTERM over for the rest of the JVM's life: the first sets the request, a
   * later second one halts the JVM at once with the first one's status, saying so on {@code err}.
   *
   * @param tool the tool's name, which starts the message of a second signal
   */
  public static StopSignal install(String tool, PrintStream err) {
    StopSignal stop = new StopSignal();
    try {
      Class<?> signal = Class.forName("sun.misc.Signal");
      Class<?> handlerType = Class.forName("sun.misc.SignalHandler");
      Constructor<?> named = signal.getConstructor(String.class);
      Method handle = signal.getMethod("handle", signal, handlerType);
      Method name = signal.getMethod("getName");
      Method numberOf = signal.getMethod("getNumber");
      Object handler = Proxy.newProxyInstance(StopSignal.class.getClassLoader(),
          new Class<?>[] {handlerType}, (proxy, method, args) -> {
            switch (method.getName()) {
              case "handle" -> {
                String n = "SIG" + name.invoke(args[0]);
                if (!stop.request(n, (Integer) numberOf.invoke(args[0]))
                    && System.nanoTime() - stop.first.get().nanos() > REPEAT_MILLIS * 1_000_000) {
                  err.printf(Locale.ROOT, "%n%s: %s again: quitting at once, without writing"
                      + " anything more%n", tool, n);
                  err.flush();
                  Runtime.getRuntime().halt(stop.exitStatus());
                }
                return null;
              }
              case "hashCode" -> {
                return System.identityHashCode(proxy);
              }
              case "equals" -> {
                return proxy == args[0];
              }
              default -> {
                return "StopSignal handler of " + tool;
              }
            }
          });
      for (String s : new String[] {"INT", "TERM"}) {
        handle.invoke(null, named.newInstance(s), handler);
      }
    } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
      // No sun.misc.Signal here, or the JVM keeps the signal: the default behaviour stays.
    }
    return stop;
  }

  /**
   * Records a request to stop (as a signal would).
   *
   * @param signal its name, e.g. {@code SIGINT}
   * @param signalNumber its number (the exit status is 128 + it)
   * @return whether this was the first request
   */
  public boolean request(String signal, int signalNumber) {
    return first.compareAndSet(null, new First(signal, signalNumber, System.nanoTime()));
  }

  /** Whether a stop was requested. */
  public boolean requested() {
    return first.get() != null;
  }

  /** The first signal's name ({@code SIGINT}, {@code SIGTERM}), or null if none came. */
  public String signal() {
    First f = first.get();
    return f == null ? null : f.name();
  }

  /** 128 + the first signal's number: 130 for SIGINT, 143 for SIGTERM. */
  public int exitStatus() {
    First f = first.get();
    return f == null ? 0 : 128 + f.number();
  }
}
