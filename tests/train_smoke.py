"""A short training run for leak checkers (not a pytest file): LeNet-5 fits 320 images of the
MNIST sample that ships with cnnkit for one epoch with Adam, then evaluates, predicts, saves
and loads. Run by `tests/sanitize.sh --train` under LeakSanitizer and, by hand, under valgrind
(the command is in tests/sanitize.sh's head)."""
import os
import tempfile

import numpy as np

import cnnkit

(x_train, y_train), (x_test, y_test) = cnnkit.datasets.load_mnist_sample()
prep = lambda x: ((x[:, None] / 255.0 - 0.1307) / 0.3081).astype(np.float32)  # noqa: E731
x_train, y_train = prep(x_train[:320]), y_train[:320]
x_test, y_test = prep(x_test[:64]), y_test[:64]

cnnkit.set_random_seed(0)
model = cnnkit.models.lenet5()
model.compile(optimizer=cnnkit.optim.Adam(learning_rate=1e-3), loss="cross_entropy",
              metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=1, batch_size=32, verbose=0,
                    validation_data=(x_test, y_test))
logits = model.predict(x_test)
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "lenet.cnnkit")
    model.save(path)
    loaded = cnnkit.load_model(path)
    assert np.array_equal(loaded.predict(x_test), logits)
print(f"train smoke ok: loss {history.history['loss'][-1]:.3f}, "
      f"test {model.evaluate(x_test, y_test)}")
