"""The library's error for bad input files, shared with the converter (`data_prep`)."""

from __future__ import annotations


class CaseError(Exception):
    """Bad input for one case. The message names the file and the problem; conversion records it
    in the report and goes on with the other cases."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
