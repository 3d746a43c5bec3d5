package org.fadam;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * The keys under which the signatures carry each parameter's gradient ({@value
 * FisherTrainStep#GRADIENT_PREFIX}…) and each variable's value ({@value
 * FisherTrainStep#VARIABLE_PREFIX}…, the stateless signatures).
 */
final class GradientKeys {

  private static final Pattern NOT_KEY_CHAR = Pattern.compile("[^A-Za-z0-9_]");

  private GradientKeys() {}

  /**
   * {@value FisherTrainStep#GRADIENT_PREFIX} followed by the variable's name with every character
   * outside {@code [A-Za-z0-9_]} replaced by {@code _}.
   */
  static String of(String variableName) {
    return of(FisherTrainStep.GRADIENT_PREFIX, variableName);
  }

  /** {@code prefix} followed by the name with every character outside {@code [A-Za-z0-9_]} as {@code _}. */
  static String of(String prefix, String variableName) {
    return prefix + NOT_KEY_CHAR.matcher(variableName).replaceAll("_");
  }

  /**
   * Each parameter's key, by parameter name, in parameter order.
   *
   * @throws IllegalArgumentException if two parameters have one key, naming both
   */
  static Map<String, String> of(List<ResourceVariable<?>> parameters) {
    return of(FisherTrainStep.GRADIENT_PREFIX, parameters);
  }

  /**
   * Each variable's key under {@code prefix}, by variable name, in order.
   *
   * @throws IllegalArgumentException if two variables have one key, naming both
   */
  static Map<String, String> of(String prefix, List<ResourceVariable<?>> parameters) {
    Map<String, String> keys = new LinkedHashMap<>();
    Map<String, String> owner = new LinkedHashMap<>();
    for (ResourceVariable<?> p : parameters) {
      String key = of(prefix, p.name());
      String other = owner.putIfAbsent(key, p.name());
      if (other != null) {
        throw new IllegalArgumentException("variables '" + other + "' and '" + p.name()
            + "' have the same gradient key '" + key + "' (every character outside [A-Za-z0-9_]"
            + " becomes '_'); rename one of them");
      }
      keys.put(p.name(), key);
    }
    return keys;
  }
}
