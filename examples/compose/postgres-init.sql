-- One database per region on PostgreSQL, one for the directory (geodrop creates the tables).
CREATE DATABASE north OWNER geodrop;
CREATE DATABASE directory OWNER geodrop;
