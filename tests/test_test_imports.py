"""Tests share code through deeplab_tf.testing (or a helper module beside them), never by
importing another test module: a test file can then be moved, renamed or run alone."""
import re

from conftest import REPO

# `from test_x import`, `import test_x`, `from reliability.test_x import`, `import tests.x`,
# in code or in the source of a child process (a string).
TEST_IMPORT = re.compile(r"^\s*(?:from|import)\s+((?:tests\.|[\w.]*\btest_)\w*)", re.M)


def imports_of_tests(source):
    return [m.group(1) for m in TEST_IMPORT.finditer(source)]


def test_no_test_module_imports_another():
    found = [f"{path.relative_to(REPO)}: imports {name}"
             for path in sorted((REPO / "tests").rglob("*.py"))
             for name in imports_of_tests(path.read_text())]
    assert not found, "\n".join(found)


def test_the_check_finds_each_form():
    for line, name in [("from test_inference import make_model_dir", "test_inference"),
                       ("import test_export", "test_export"),
                       ("from reliability.test_exif import DISPLAY", "reliability.test_exif"),
                       ("import tests.helpers", "tests.helpers"),
                       ('CHILD = """\n    from test_eval_lib import NAMES\n"""', "test_eval_lib")]:
        assert imports_of_tests(line) == [name], line
    for line in ("from deeplab_tf import testing", "from helpers import META",
                 "from .files import snapshot", "import slim_reference as ref"):
        assert imports_of_tests(line) == [], line
