package org.fadam;

import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** TensorFlow's failures of an XLA-compiled step, turned into errors that name the cause. */
final class XlaErrors {

  private static final Pattern UNSUPPORTED = Pattern.compile(
      "(\\w+) \\(No registered '\\w+' OpKernel for (\\S+) devices compatible with node \\{\\{node ([^}]+)\\}\\}\\)");

  private XlaErrors() {}

  /** TF's "unsupported operations" failure as an error that names the op, if it is one. */
  static Optional<IllegalStateException> translate(RuntimeException e) {
    String m = e.getMessage();
    if (m == null || !m.contains("Detected unsupported operations")) {
      return Optional.empty();
    }
    Matcher op = UNSUPPORTED.matcher(m);
    if (!op.find()) {
      return Optional.empty();
    }
    return Optional.of(new IllegalStateException("XLA cannot compile the train step: op " + op.group(1)
        + " (node '" + op.group(3) + "') has no XLA kernel on " + op.group(2)
        + "; remove it from the model or build the step with jit(false)", e));
  }

  /** Runs a session call, translating an XLA compile failure (TF's errors are RuntimeExceptions). */
  static <T> T run(java.util.function.Supplier<T> call) {
    try {
      return call.get();
    } catch (RuntimeException e) {
      throw translate(e).orElseThrow(() -> e);
    }
  }
}
