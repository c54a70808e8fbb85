import unittest

from greet import greet


class GreetTest(unittest.TestCase):
    def test_names(self):
        self.assertEqual(greet("csc"), "hello, csc")

    def test_blank(self):
        self.assertEqual(greet("  "), "hello, world")


if __name__ == "__main__":
    unittest.main()
