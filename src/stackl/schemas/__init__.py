"""Wire models shared by the API and the client."""
