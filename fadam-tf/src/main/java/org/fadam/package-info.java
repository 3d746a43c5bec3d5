/** FAdam and FAdafactor (arXiv 2405.12807v2) as TensorFlow Java graph optimizers. */
package org.fadam;
