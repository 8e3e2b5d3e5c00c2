"""The user-side agent process; talks to the server over HTTP only."""
