"""The one exception type for problems a user can fix."""


class UserError(Exception):
    """Bad input or environment that the user can fix.

    The message is one line naming the problem and the fix; the CLI prints it and exits with code 2.
    Bugs must not use this type: they should keep their traceback.
    """

    exit_code = 2
